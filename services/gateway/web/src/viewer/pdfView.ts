/**
 * A PDF page drawn by pdf.js (from the npm registry, served by the app: its worker is
 * an asset of the build, never a CDN's), with its text layer over the canvas so the
 * page's text can be read, selected and marked. Loaded only when a PDF is opened.
 */
import { GlobalWorkerOptions, type PDFDocumentProxy, TextLayer, getDocument } from "pdfjs-dist";
import workerUrl from "pdfjs-dist/build/pdf.worker.min.mjs?url";
import { h } from "../lib/dom";

GlobalWorkerOptions.workerSrc = workerUrl;

/** Opens a PDF from its bytes (a copy: pdf.js takes the buffer it is given). */
export async function openPdf(bytes: ArrayBuffer): Promise<PDFDocumentProxy> {
  const task = getDocument({
    data: new Uint8Array(bytes.slice(0)),
    // No eval (the page's Content-Security-Policy forbids it), no XFA forms.
    isEvalSupported: false,
    enableXfa: false,
  });
  return task.promise;
}

export interface DrawnPage {
  el: HTMLElement;
  textLayer: HTMLElement;
  pages: number;
}

/** Draws `pageNumber` (1-based) `width` CSS pixels wide: canvas, then text layer. */
export async function drawPage(pdf: PDFDocumentProxy, pageNumber: number, width: number): Promise<DrawnPage> {
  const page = await pdf.getPage(Math.min(Math.max(pageNumber, 1), pdf.numPages));
  const scale = width / page.getViewport({ scale: 1 }).width;
  const viewport = page.getViewport({ scale });
  const ratio = window.devicePixelRatio || 1;
  const canvas = h("canvas", { "aria-hidden": "true" });
  canvas.width = Math.floor(viewport.width * ratio);
  canvas.height = Math.floor(viewport.height * ratio);
  // CSSOM, not a style attribute: allowed by the Content-Security-Policy.
  canvas.style.width = `${Math.floor(viewport.width)}px`;
  canvas.style.height = `${Math.floor(viewport.height)}px`;
  const textLayer = h("div", { class: "textLayer" });
  const el = h("div", { class: "pdf-page" }, canvas, textLayer);
  el.style.width = `${Math.floor(viewport.width)}px`;
  el.style.height = `${Math.floor(viewport.height)}px`;
  el.style.setProperty("--scale-factor", String(scale));
  el.style.setProperty("--total-scale-factor", String(scale));
  await page.render({
    canvas,
    viewport,
    transform: ratio === 1 ? undefined : [ratio, 0, 0, ratio, 0, 0],
  }).promise;
  const layer = new TextLayer({ textContentSource: page.streamTextContent(), container: textLayer, viewport });
  await layer.render();
  return { el, textLayer, pages: pdf.numPages };
}
