// vendor.mjs copies the few browser files the dashboard and the docs page use
// from node_modules into static/vendor, where go:embed picks them up. Run it
// with `npm ci && npm run vendor` after changing a pinned version in
// package.json, and commit static/vendor: neither `go build` nor the server
// needs Node.
//
// It strips sourceMappingURL comments (the maps are not vendored) and writes
// static/vendor/VERSIONS.json, which a Go test compares with package.json so
// that a changed pin without a refreshed copy fails the build.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "static", "vendor");

// package -> [source path in the package, vendored name]
const files = {
  "swagger-ui-dist": [
    ["swagger-ui-bundle.js", "swagger-ui-bundle.js"],
    ["swagger-ui.css", "swagger-ui.css"],
    ["LICENSE", "swagger-ui-dist.LICENSE.txt"],
    ["NOTICE", "swagger-ui-dist.NOTICE.txt"],
  ],
  "htmx.org": [
    ["dist/htmx.min.js", "htmx.min.js"],
    ["LICENSE", "htmx.org.LICENSE.txt"],
  ],
};

const pins = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).devDependencies;
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const manifest = { packages: {}, files: {} };
for (const [pkg, list] of Object.entries(files)) {
  const dir = join(root, "node_modules", pkg);
  const { version } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  if (version !== pins[pkg]) {
    throw new Error(`${pkg}: node_modules has ${version}, package.json pins ${pins[pkg]}: run npm ci`);
  }
  manifest.packages[pkg] = version;
  for (const [src, dst] of list) {
    let body = readFileSync(join(dir, src));
    if (/\.(js|css)$/.test(dst)) {
      body = Buffer.from(
        body.toString("utf8").replace(/\n?\/[/*][#@] sourceMappingURL=[^\n]*(\*\/)?\s*$/, "\n"),
        "utf8",
      );
    }
    writeFileSync(join(out, dst), body);
    manifest.files[dst] = "sha256-" + createHash("sha256").update(body).digest("base64");
    console.log(`vendored ${pkg}@${version} ${src} -> static/vendor/${dst} (${body.length} bytes)`);
  }
}
writeFileSync(join(out, "VERSIONS.json"), JSON.stringify(manifest, null, 2) + "\n");
