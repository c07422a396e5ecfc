// Tile layout of the room page: every visible tile gets an absolute position inside the stage
// (`#videos-grid`), so tiles always fit the space left between the header and the control bar,
// keep 16:9, and reflow on every resize or tile change. Pure geometry first, DOM after.

import { MIN_TILE_WIDTH } from "./consts";

/** Tiles keep this aspect (width / height). */
export const TILE_ASPECT = 16 / 9;
/** Space between tiles, in CSS pixels. */
export const TILE_GAP = 8;

/** A grid that fits `n` tiles into a box: columns, rows and the tile size. */
export interface GridFit {
  cols: number;
  rows: number;
  width: number;
  height: number;
}

/** The column count that gives the largest 16:9 tiles for `n` tiles in `width` × `height`. */
export function fitGrid(n: number, width: number, height: number, gap = TILE_GAP): GridFit {
  let best: GridFit = { cols: 1, rows: 1, width: 0, height: 0 };
  for (let cols = 1; cols <= Math.max(n, 1); cols++) {
    const rows = Math.ceil(Math.max(n, 1) / cols);
    const w = Math.min((width - gap * (cols - 1)) / cols, ((height - gap * (rows - 1)) / rows) * TILE_ASPECT);
    if (w > best.width) best = { cols, rows, width: w, height: w / TILE_ASPECT };
  }
  best.width = Math.max(0, Math.floor(best.width));
  best.height = Math.max(0, Math.floor(best.width / TILE_ASPECT));
  return best;
}

/** How many tiles fit on one page without going under the minimum width (at least 1). */
export function tilesPerPage(n: number, width: number, height: number): number {
  const minWidth = Math.min(MIN_TILE_WIDTH, width);
  let fit = n;
  while (fit > 1 && fitGrid(fit, width, height).width < minWidth) fit--;
  return fit;
}

/** A tile's box, relative to the stage. */
export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Boxes of `n` tiles in a grid centred in `area`. */
export function gridBoxes(n: number, area: Box): Box[] {
  if (n === 0) return [];
  const fit = fitGrid(n, area.width, area.height);
  const usedHeight = fit.rows * fit.height + (fit.rows - 1) * TILE_GAP;
  const top0 = area.top + Math.max(0, (area.height - usedHeight) / 2);
  const boxes: Box[] = [];
  for (let i = 0; i < n; i++) {
    const row = Math.floor(i / fit.cols);
    // The last row may be short: centre it too.
    const inRow = row === fit.rows - 1 ? n - row * fit.cols : fit.cols;
    const rowWidth = inRow * fit.width + (inRow - 1) * TILE_GAP;
    const left0 = area.left + Math.max(0, (area.width - rowWidth) / 2);
    const col = i - row * fit.cols;
    boxes.push({
      left: Math.round(left0 + col * (fit.width + TILE_GAP)),
      top: Math.round(top0 + row * (fit.height + TILE_GAP)),
      width: fit.width,
      height: fit.height,
    });
  }
  return boxes;
}

/** What the layout decided, for the pager and for tests. */
export interface LayoutResult {
  mode: "grid" | "spotlight";
  page: number;
  pages: number;
  visible: number;
}

/**
 * Lays out `tiles` in `stage`: a grid (paged when they do not all fit at the minimum width), or,
 * with `spotlight` set, that tile large and the others in a strip beside (landscape) or below
 * (portrait) it. `reserveBottom` pixels at the bottom are kept free (for the pager).
 */
export function layoutTiles(
  stage: HTMLElement,
  tiles: HTMLElement[],
  opts: { spotlight?: HTMLElement; page: number; reserveBottom: number },
): LayoutResult {
  const width = stage.clientWidth;
  const height = Math.max(0, stage.clientHeight - opts.reserveBottom);
  const place = (tile: HTMLElement, box: Box | undefined) => {
    if (!box) {
      tile.hidden = true;
      tile.dataset.visible = "false";
      return;
    }
    tile.hidden = false;
    tile.dataset.visible = "true";
    tile.style.left = `${box.left}px`;
    tile.style.top = `${box.top}px`;
    tile.style.width = `${box.width}px`;
    tile.style.height = `${box.height}px`;
  };

  const spotlight = opts.spotlight && tiles.includes(opts.spotlight) ? opts.spotlight : undefined;
  if (spotlight && tiles.length > 1) {
    const others = tiles.filter((t) => t !== spotlight);
    const landscape = width > height * 1.2;
    const stripSize = landscape
      ? Math.min(Math.max(width * 0.2, 160), 320)
      : Math.min(Math.max(height * 0.2, 90), 200);
    const main: Box = landscape
      ? { left: 0, top: 0, width: width - stripSize - TILE_GAP, height }
      : { left: 0, top: 0, width, height: height - stripSize - TILE_GAP };
    const strip: Box = landscape
      ? { left: width - stripSize, top: 0, width: stripSize, height }
      : { left: 0, top: height - stripSize, width, height: stripSize };
    place(spotlight, gridBoxes(1, main)[0]);
    // As many of the others as fit in the strip at a readable size; the rest are hidden.
    let shown = others.length;
    const minWidth = Math.min(120, strip.width);
    while (shown > 1 && fitGrid(shown, strip.width, strip.height).width < minWidth) shown--;
    const boxes = gridBoxes(shown, strip);
    others.forEach((t, i) => place(t, boxes[i]));
    return { mode: "spotlight", page: 0, pages: 1, visible: shown + 1 };
  }

  const perPage = tilesPerPage(tiles.length, width, height);
  const pages = Math.max(1, Math.ceil(tiles.length / perPage));
  const page = Math.min(Math.max(opts.page, 0), pages - 1);
  const onPage = tiles.slice(page * perPage, (page + 1) * perPage);
  const boxes = gridBoxes(onPage.length, { left: 0, top: 0, width, height });
  tiles.forEach((t) => {
    const i = onPage.indexOf(t);
    place(t, i >= 0 ? boxes[i] : undefined);
  });
  return { mode: "grid", page, pages, visible: onPage.length };
}
