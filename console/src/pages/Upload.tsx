export function Upload() {
  return <h1>Upload</h1>;
}
