/**
 * A document's original bytes (GET /v1/documents/{id}/file) and extracted text per
 * page (GET /v1/documents/{id}/text), fetched with the key and kept for the last few
 * documents opened.
 */
import { type ApiClient, seg } from "../api/client";
import type { PageText } from "../api/types";

const KEEP = 4;

function remember<T>(cache: Map<string, Promise<T>>, id: string, load: () => Promise<T>): Promise<T> {
  const found = cache.get(id);
  if (found) {
    cache.delete(id);
    cache.set(id, found);
    return found;
  }
  const loading = load();
  cache.set(id, loading);
  loading.catch(() => cache.delete(id));
  while (cache.size > KEEP) cache.delete(cache.keys().next().value as string);
  return loading;
}

/** The text endpoint's pages: a list of {page, text}, or {pages: [...]}. */
export function parsePages(body: unknown): PageText[] {
  const list = Array.isArray(body)
    ? body
    : body && typeof body === "object" && Array.isArray((body as { pages?: unknown }).pages)
      ? (body as { pages: unknown[] }).pages
      : [];
  const pages: PageText[] = [];
  list.forEach((item, index) => {
    if (item && typeof item === "object") {
      const record = item as Record<string, unknown>;
      const page = Number(record.page ?? index + 1);
      pages.push({ page: Number.isFinite(page) ? page : index + 1, text: String(record.text ?? "") });
    }
  });
  return pages;
}

export class DocumentSource {
  private readonly files = new Map<string, Promise<ArrayBuffer>>();
  private readonly texts = new Map<string, Promise<PageText[]>>();

  constructor(private readonly client: ApiClient) {}

  file(documentId: string): Promise<ArrayBuffer> {
    return remember(this.files, documentId, async () => {
      const response = await this.client.request(`/v1/documents/${seg(documentId)}/file`);
      return response.arrayBuffer();
    });
  }

  text(documentId: string): Promise<PageText[]> {
    return remember(this.texts, documentId, async () =>
      parsePages(await this.client.json<unknown>(`/v1/documents/${seg(documentId)}/text`)),
    );
  }
}
