import { execFileSync } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (a thing's), made
 * with Debian's openssl in a new folder: ca.pem, server.pem/server.key, client.pem/client.key.
 */
export async function makeCertificates(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "sg-tls-"));
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
  const key = ["-newkey", "rsa:2048", "-nodes"];
  run(
    "req",
    "-x509",
    ...key,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=test-ca",
  );
  await writeFile(path.join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1\n");
  for (const [name, cn] of [
    ["server", "127.0.0.1"],
    ["client", "edge-01"],
  ] as const) {
    run("req", ...key, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`);
    run(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      ...(name === "server" ? ["-extfile", "san.ext"] : []),
    );
  }
  return dir;
}
