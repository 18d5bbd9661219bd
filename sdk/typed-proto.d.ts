/** `topo deploy` bundles an imported .proto file as its text (esbuild's text loader), for protoType (sdk/typed.ts). */
declare module '*.proto' {
  const text: string;
  export default text;
}
