export function ImagePage({ id }: { id: string }) {
  return <h1>Image {id}</h1>;
}
