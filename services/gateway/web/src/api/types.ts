/** The API's bodies, as the app reads them (see /openapi.json). */

export interface Identity {
  id: string;
  tenant: string;
  role: string;
  collections: string[] | null;
  requests_per_minute: number;
  permissions: string[];
}

export interface Collection {
  name: string;
  description: string;
  created_at: number;
  documents: number;
  chunks: number;
}

export interface Progress {
  chunks_embedded: number;
  chunks_total: number | null;
}

export interface DocumentView {
  document_id: string;
  collection: string;
  filename: string;
  type: string;
  size: number | null;
  sha256: string;
  pages: number | null;
  chunks: number | null;
  status: string;
  error?: string | null;
  progress: Progress;
  job_id: string;
  created_at: number;
}

export interface UploadedDocument {
  filename: string;
  job_id: string;
  document_id: string;
  duplicate: boolean;
  replaces?: string[];
}

export interface UploadAccepted {
  job_id: string;
  document_id: string;
  duplicate: boolean;
  documents: UploadedDocument[];
}

export interface Citation {
  n: number;
  document_id: string;
  filename: string;
  page: number;
  snippet: string;
  score: number;
  /** Where the cited passage is in the page's text (GET .../text), when known. */
  char_start?: number;
  char_end?: number;
}

/** One page of a document's extracted text (GET /v1/documents/{id}/text). */
export interface PageText {
  page: number;
  text: string;
}

export interface ChatMessage {
  role: "user" | "assistant";
  content: string;
}

/** What a user may do, from the key's permissions (GET /v1/me). */
export function canWrite(identity: Identity): boolean {
  return identity.permissions.includes("write");
}
