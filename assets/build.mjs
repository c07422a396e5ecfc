// Builds the client into priv/static/assets (committed, embedded in the server binary):
//   node build.mjs           src/index.ts  -> ../priv/static/assets/js/app.js
//                            css/app.css   -> ../priv/static/assets/css/app.css
//   node build.mjs --check   builds into a temporary directory and fails (exit 1) when the
//                            committed files differ: the stale-bundle check.
// esbuild output is deterministic for the same inputs and esbuild version, so a byte
// comparison is meaningful. Everything is offline: no CDN, no network.

import * as esbuild from "esbuild";
import { mkdtempSync, readFileSync, rmSync, existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const assetsDir = dirname(fileURLToPath(import.meta.url));
const staticDir = join(assetsDir, "..", "priv", "static", "assets");
const outputs = ["js/app.js", "css/app.css"];

async function build(outDir) {
  const common = { bundle: true, minify: true, logLevel: "warning", legalComments: "eof" };
  await esbuild.build({
    ...common,
    entryPoints: [join(assetsDir, "src", "index.ts")],
    outfile: join(outDir, "js", "app.js"),
    target: "es2017",
    format: "iife",
    platform: "browser",
    // Images stay where the server serves them.
    external: ["/images/*"],
  });
  await esbuild.build({
    ...common,
    entryPoints: [join(assetsDir, "css", "app.css")],
    outfile: join(outDir, "css", "app.css"),
    target: ["chrome90", "firefox90", "safari15"],
    external: ["/images/*"],
  });
}

if (process.argv.includes("--check")) {
  const tmp = mkdtempSync(join(tmpdir(), "videoroom-assets-"));
  try {
    await build(tmp);
    const stale = outputs.filter((file) => {
      const committed = join(staticDir, file);
      return !existsSync(committed) || !readFileSync(committed).equals(readFileSync(join(tmp, file)));
    });
    if (stale.length > 0) {
      for (const file of stale) {
        console.error(`stale: ${relative(process.cwd(), join(staticDir, file))} differs from a fresh build`);
      }
      console.error("run `npm run build` in assets/ and commit the result");
      process.exit(1);
    }
    console.log(`up to date: ${outputs.join(", ")}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
} else {
  mkdirSync(staticDir, { recursive: true });
  await build(staticDir);
  console.log(`built ${outputs.map((f) => relative(process.cwd(), join(staticDir, f))).join(", ")}`);
}
