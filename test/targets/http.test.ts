/**
 * httpGet through the real curl of this machine (the local target) against a loopback server.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { httpGet } from "../../src/targets/http.ts";
import { LocalTarget } from "../../src/targets/local.ts";
import { type FileServer, serveFiles } from "../lab/http.ts";
import { have } from "../lab/prereq.ts";

const local = new LocalTarget();

describe.skipIf(!have("curl", "curl"))("httpGet", () => {
  let server: FileServer;
  beforeAll(() => {
    server = serveFiles({
      "/hello": "hello\n",
      "/host": (req) => new Response(req.headers.get("host") ?? ""),
    });
  });
  afterAll(() => server.stop());

  test("answers with the status and body, and sends the Host header asked for", async () => {
    expect(await httpGet(local, `${server.url}/hello`)).toEqual({ status: 200, body: "hello\n" });
    expect(await httpGet(local, `${server.url}/nothing`)).toMatchObject({ status: 404 });
    expect(await httpGet(local, `${server.url}/host`, { host: "app.lab.example" })).toEqual({
      status: 200,
      body: "app.lab.example",
    });
  });

  test.each([
    // curl would read it as one of its options (here: print its version, or read a config file).
    ["--version"],
    ["-K/etc/hostname"],
    // curl reads local files and speaks other protocols; the request is an HTTP one or none.
    ["file:///etc/hostname"],
    ["ftp://127.0.0.1/"],
  ])("refuses %p, which is no http or https URL, before running anything", async (url) => {
    await expect(httpGet(local, url)).rejects.toThrow(`${JSON.stringify(url)} is not an http or https URL`);
  });

  test("refuses a Host header that would end the header and start another", async () => {
    await expect(
      httpGet(local, `${server.url}/host`, { host: "app.lab.example\r\nX-Injected: 1" }),
    ).rejects.toThrow("is not a host name");
  });
});
