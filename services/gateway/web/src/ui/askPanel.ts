/**
 * Asking: text box "Question", buttons "Ask" and "Stop", the answer streaming into the
 * region "Answer". Follow-up questions carry the conversation (the earlier turns go
 * with the question to /v1/chat/completions); "New conversation" forgets it. Stop
 * cancels the question's job (DELETE /v1/jobs/{id}, for keys that may) and stops
 * reading; the text so far stays, marked as stopped.
 */
import { type ApiClient, seg } from "../api/client";
import { type ChatAnswer, ChatFailed, askStreaming } from "../api/chat";
import { describe, isAbort } from "../api/errors";
import type { ChatMessage } from "../api/types";
import { button, h, on, replaceChildren, uid } from "../lib/dom";
import { type OnCite, type RenderedAnswer, isNoAnswer, renderAnswer } from "./answerView";

export interface AskOptions {
  client: ApiClient;
  /** Whether the key may cancel jobs (write permission). */
  canCancel: boolean;
  onCite: OnCite;
  announce: (text: string) => void;
}

/** Earlier user and assistant turns kept for follow-ups (the server uses the latest 8). */
export const HISTORY_MESSAGES = 8;

export class AskPanel {
  readonly el: HTMLElement;
  private collection = "";
  private history: ChatMessage[] = [];
  private running: AbortController | null = null;
  private jobId = "";
  private stopRequested = false;
  private readonly question: HTMLTextAreaElement;
  private readonly askButton: HTMLButtonElement;
  private readonly stopButton: HTMLButtonElement;
  private readonly newButton: HTMLButtonElement;
  private readonly problem: HTMLElement;
  private readonly earlier: HTMLOListElement;
  private readonly earlierSection: HTMLElement;
  private readonly answerRegion: HTMLElement;
  private readonly answerContent: HTMLElement;

  constructor(private readonly options: AskOptions) {
    const headingId = uid("ask");
    const questionId = uid("question");
    const answerHeadingId = uid("answer");
    this.question = h("textarea", { id: questionId, name: "question", rows: 3, required: true });
    this.askButton = h("button", { type: "submit" }, "Ask");
    this.stopButton = button("Stop", () => void this.stop(), { disabled: true });
    this.newButton = button("New conversation", () => this.reset(this.collection), { disabled: true });
    this.problem = h("p", { class: "error", role: "alert" });
    this.earlier = h("ol", { class: "turns" });
    // A heading of its own: the earlier turns' "Sources" headings (h5) sit under it, not
    // straight under "Ask" (h3), so the outline skips no level.
    const earlierHeadingId = uid("conversation");
    this.earlierSection = h(
      "section",
      { "aria-labelledby": earlierHeadingId, class: "conversation", hidden: true },
      h("h4", { id: earlierHeadingId }, "Conversation so far"),
      this.earlier,
    );
    this.answerContent = h("div", { class: "answer-content" });
    this.answerRegion = h(
      "section",
      { role: "region", "aria-labelledby": answerHeadingId, class: "answer-region" },
      h("h4", { id: answerHeadingId }, "Answer"),
      this.answerContent,
    );
    const form = h(
      "form",
      { class: "ask-form" },
      h("label", { for: questionId }, "Question"),
      this.question,
      h("div", { class: "buttons" }, this.askButton, this.stopButton, this.newButton),
    );
    on(form, "submit", (event) => {
      event.preventDefault();
      void this.ask(this.question.value);
    });
    // Enter asks; Shift+Enter is a new line.
    on(this.question, "keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    this.el = h(
      "section",
      { "aria-labelledby": headingId, class: "ask" },
      h("h3", { id: headingId }, "Ask"),
      this.earlierSection,
      form,
      this.problem,
      this.answerRegion,
    );
    this.placeholder();
  }

  /** A new conversation about `collection` (stops a running question). */
  reset(collection: string): void {
    this.running?.abort();
    this.collection = collection;
    this.history = [];
    replaceChildren(this.earlier);
    this.earlierSection.hidden = true;
    this.newButton.disabled = true;
    replaceChildren(this.problem);
    this.placeholder();
  }

  get busy(): boolean {
    return this.running !== null;
  }

  async ask(text: string): Promise<void> {
    const question = text.trim();
    if (!question) {
      replaceChildren(this.problem, "Type a question first.");
      this.question.focus();
      return;
    }
    if (this.running) return;
    const controller = new AbortController();
    this.running = controller;
    this.jobId = "";
    this.stopRequested = false;
    replaceChildren(this.problem);
    this.setBusy(true);
    // The previous answer joins the conversation shown above.
    this.archiveCurrent();
    const streamed = document.createTextNode("");
    const status = h("p", { class: "answer-status" }, "Waiting for the answer…");
    replaceChildren(
      this.answerContent,
      h("p", { class: "asked" }, h("span", { class: "label" }, "Question: "), question),
      status,
      h("div", { class: "answer-text streaming" }, h("p", {}, streamed)),
    );
    const messages: ChatMessage[] = [...this.history.slice(-HISTORY_MESSAGES), { role: "user", content: question }];
    let answer: RenderedAnswer | null = null;
    try {
      const result: ChatAnswer = await askStreaming(
        this.options.client,
        this.collection,
        messages,
        {
          onJob: (jobId) => {
            this.jobId = jobId;
          },
          onText: (piece) => {
            if (status.isConnected) status.remove();
            streamed.appendData(piece);
          },
        },
        controller.signal,
      );
      const { mode, citations, abstained } = result;
      answer = { question, answer: result.answer, mode, citations, abstained };
      this.history.push({ role: "user", content: question }, { role: "assistant", content: result.answer });
      this.question.value = "";
      this.options.announce(isNoAnswer(citations, abstained) ? "No answer in your documents." : "The answer is ready.");
    } catch (error) {
      const cancelled = error instanceof ChatFailed && error.cancelled;
      if ((this.stopRequested && isAbort(error)) || cancelled) {
        answer = { question, answer: streamed.data, mode: "", citations: [], stopped: true };
        this.options.announce("Stopped.");
      } else if (!isAbort(error)) {
        replaceChildren(this.problem, this.failure(error));
        status.remove();
      }
    } finally {
      if (this.running === controller) this.running = null;
      this.setBusy(false);
    }
    if (answer) this.show(answer);
    this.newButton.disabled = this.history.length === 0;
  }

  /** Stops the running question: cancels its job when the key may, and stops reading. */
  async stop(): Promise<void> {
    const running = this.running;
    if (!running) return;
    this.stopRequested = true;
    this.stopButton.disabled = true;
    if (this.jobId && this.options.canCancel) {
      try {
        await this.options.client.request(`/v1/jobs/${seg(this.jobId)}`, { method: "DELETE" });
      } catch {
        // 409: it ended meanwhile; or the request failed. Either way, stop reading.
      }
    }
    running.abort();
    this.question.focus();
  }

  private failure(error: unknown): string {
    if (error instanceof ChatFailed) return `The question was not answered: ${error.message}`;
    return describe(error);
  }

  private setBusy(busy: boolean): void {
    this.askButton.disabled = busy;
    this.stopButton.disabled = !busy;
    this.answerRegion.setAttribute("aria-busy", busy ? "true" : "false");
  }

  private current: RenderedAnswer | null = null;

  private show(answer: RenderedAnswer): void {
    this.current = answer;
    replaceChildren(
      this.answerContent,
      h("p", { class: "asked" }, h("span", { class: "label" }, "Question: "), answer.question),
      renderAnswer(answer, this.options.onCite),
    );
  }

  private archiveCurrent(): void {
    if (!this.current) return;
    const turn = this.current;
    this.current = null;
    this.earlier.appendChild(
      h(
        "li",
        { class: "turn" },
        h("p", { class: "asked" }, h("span", { class: "label" }, "Question: "), turn.question),
        renderAnswer(turn, this.options.onCite, "h5"),
      ),
    );
    this.earlierSection.hidden = false;
  }

  private placeholder(): void {
    this.current = null;
    replaceChildren(
      this.answerContent,
      h(
        "p",
        { class: "placeholder" },
        this.collection ? `Ask a question about the documents in ${this.collection}.` : "Pick a collection first.",
      ),
    );
  }
}
