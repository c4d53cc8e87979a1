/**
 * The API key lives in the tab's sessionStorage only: it survives a reload of the tab,
 * is gone when the tab closes, is never written to localStorage or a cookie, and
 * sign-out removes it.
 */
export const STORAGE_KEY = "documind.apiKey";

export class KeyStore {
  constructor(private readonly storage: Storage | null = safeSessionStorage()) {}

  get(): string | null {
    return this.storage?.getItem(STORAGE_KEY) ?? null;
  }

  set(key: string): void {
    this.storage?.setItem(STORAGE_KEY, key);
  }

  clear(): void {
    this.storage?.removeItem(STORAGE_KEY);
  }
}

function safeSessionStorage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    // Storage disabled: the key lasts as long as the page.
    return null;
  }
}
