/**
 * Calls `fn` at most once per `ms`: at once when idle, else once more at the end of
 * the wait (so the last call's effect is never lost). Used to re-read a collection's
 * documents as uploads are added and end: many uploads, one request a second at most.
 */
export interface Throttled {
  (): void;
  cancel(): void;
}

export function throttle(fn: () => void | Promise<void>, ms: number): Throttled {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let pending = false;
  const fire = (): void => {
    pending = false;
    timer = setTimeout(() => {
      timer = null;
      if (pending) fire();
    }, ms);
    void fn();
  };
  const throttled = (() => {
    if (timer) pending = true;
    else fire();
  }) as Throttled;
  throttled.cancel = () => {
    if (timer) clearTimeout(timer);
    timer = null;
    pending = false;
  };
  return throttled;
}
