import { describe, expect, it } from "vitest";
import { ApiClient } from "../src/api/client";
import { ApiError } from "../src/api/errors";
import { type JobEvent, followJob } from "../src/api/jobEvents";
import { FakeApi, Stream, json, settle } from "./fakeApi";

describe("followJob", () => {
  it("reads the events with the Bearer header and resumes a cut stream after the last id", async () => {
    const api = new FakeApi();
    const first = new Stream();
    const second = new Stream();
    const streams = [first, second];
    api.on("GET", "/v1/jobs/j1/events", (_r, init) => (streams.shift() as Stream).response(init.signal));
    const client = new ApiClient("dm_a_b", () => {}, api.fetch);
    const seen: JobEvent[] = [];
    const done = followJob(client, "j1", (e) => seen.push(e), { sleep: async () => {} });
    first.event("queued", {}, "1-0");
    first.event("embedding", { stage: "embedder" }, "2-0");
    await settle();
    first.fail();
    await settle();
    second.event("done", { chunks: 3, pages: 1 }, "3-0");
    const final = await done;
    expect(final.type).toBe("done");
    expect(seen.map((e) => e.type)).toEqual(["queued", "embedding", "done"]);
    expect(api.requests.map((r) => r.headers.get("Authorization"))).toEqual(["Bearer dm_a_b", "Bearer dm_a_b"]);
    expect(api.requests[0]?.headers.get("Last-Event-ID")).toBeNull();
    expect(api.requests[1]?.headers.get("Last-Event-ID")).toBe("2-0");
  });

  it("gives up on an unknown job at once", async () => {
    const api = new FakeApi();
    api.on("GET", "/v1/jobs/nope/events", () => json({ detail: "job nope not found" }, 404));
    const client = new ApiClient("k", () => {}, api.fetch);
    await expect(followJob(client, "nope", () => {}, { sleep: async () => {} })).rejects.toBeInstanceOf(ApiError);
    expect(api.requests).toHaveLength(1);
  });

  it("reports a refused key to the client's onUnauthorized", async () => {
    const api = new FakeApi();
    api.on("GET", "/v1/jobs/j/events", () => json({ detail: "the API key was revoked" }, 401));
    const refused: string[] = [];
    const client = new ApiClient("k", (e) => refused.push(e.detail), api.fetch);
    await expect(followJob(client, "j", () => {})).rejects.toMatchObject({ status: 401 });
    expect(refused).toEqual(["the API key was revoked"]);
  });
});
