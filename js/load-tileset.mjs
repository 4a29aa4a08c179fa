// Load a 3D Tiles tileset with loaders.gl (what deck.gl's Tile3DLayer uses) and every
// tile content it references; print a JSON summary.
// Usage: node load-tileset.mjs http://127.0.0.1:PORT/3dtiles/tileset.json
import { load } from "@loaders.gl/core";
import { Tiles3DLoader } from "@loaders.gl/3d-tiles";

const url = process.argv[2];
const tileset = await load(url, Tiles3DLoader);
const tiles = [];
const walk = (tile) => {
  tiles.push(tile);
  for (const child of tile.children || []) walk(child);
};
walk(tileset.root);
const contents = [];
for (const tile of tiles) {
  if (!tile.contentUrl) continue;
  const content = await load(tile.contentUrl, Tiles3DLoader, { "3d-tiles": { loadGLTF: true } });
  const gltf = content.gltf || {};
  contents.push({
    url: tile.contentUrl,
    type: content.type,
    nodes: (gltf.nodes || []).length,
    meshes: (gltf.meshes || []).length,
    transform: tile.transform ? Array.from(tile.transform) : null,
  });
}
console.log(JSON.stringify({ type: tileset.type, lodMetricValue: tileset.lodMetricValue, tiles: tiles.length, contents }));
