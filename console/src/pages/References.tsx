export function References() {
  return <h1>References</h1>;
}
export function ReferencePage({ reference }: { reference: string }) {
  return <h1>{reference}</h1>;
}
