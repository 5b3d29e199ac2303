export function Hosts() {
  return <h1>Hosts</h1>;
}
