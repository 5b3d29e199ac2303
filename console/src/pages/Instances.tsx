export function Instances() {
  return <h1>Instances</h1>;
}
export function InstancePage({ id }: { id: string }) {
  return <h1>{id}</h1>;
}
