// Verify a Cachet attestation token (an EAR JWT) as a relying party, with
// the npm package `jose` (Node.js 18 or later):
//
//   npm install jose
//   node verify-token.mjs --issuer https://cachet.example.com TOKEN_FILE   # or '-' for stdin
//
// Same checks as verify_token.py: the keys from the issuer's OpenID
// discovery document (which must name this issuer), the signature with a
// pinned algorithm (ES256, ES384, PS256), `iss`, `exp`/`nbf`/`iat`, the EAR
// profile, every submodule's `ear.status` = `affirming` (`warning` only with
// --accept-warning), and with --nonce HEX the nonce and `cachet.freshness`.
// Prints ACCEPTED (exit 0) or REFUSED: <why> (exit 1); exit 2 on usage or
// network errors.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { createRemoteJWKSet, jwtVerify, errors } from "jose";

const EAR_PROFILE = "tag:github.com,2023:veraison/ear";
const ALGORITHMS = ["ES256", "ES384", "PS256"];

class Refused extends Error {}

async function discover(issuer) {
  const url = issuer.replace(/\/$/, "") + "/.well-known/openid-configuration";
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  const conf = await r.json();
  if (conf.issuer !== issuer) throw new Refused(`discovery document names issuer ${conf.issuer}, expected ${issuer}`);
  return new URL(conf.jwks_uri);
}

export async function verify(token, issuer, { acceptWarning = false, nonce, runtimeData } = {}) {
  const jwks = createRemoteJWKSet(await discover(issuer));
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token, jwks, {
      issuer,
      algorithms: ALGORITHMS,
      requiredClaims: ["exp", "iat", "iss"],
      clockTolerance: 5,
    }));
  } catch (e) {
    if (e instanceof errors.JOSEError) throw new Refused(`${e.code}: ${e.message}`);
    throw e;
  }
  if (claims.eat_profile !== EAR_PROFILE) throw new Refused(`not an EAR token (eat_profile ${claims.eat_profile})`);
  const submods = claims.submods;
  if (!submods || typeof submods !== "object" || Object.keys(submods).length === 0) {
    throw new Refused("no submodule (no appraisal) in the token");
  }
  const allowed = acceptWarning ? ["affirming", "warning"] : ["affirming"];
  for (const [name, sub] of Object.entries(submods)) {
    if (!allowed.includes(sub["ear.status"])) {
      throw new Refused(`submodule ${name}: ear.status is ${sub["ear.status"]}, not ${allowed.join(" or ")}`);
    }
  }
  if (nonce !== undefined) {
    if (claims.eat_nonce !== nonce.toLowerCase()) throw new Refused(`eat_nonce ${claims.eat_nonce} is not the expected nonce`);
    if (claims["cachet.freshness"] !== "nonce") throw new Refused(`cachet.freshness is ${claims["cachet.freshness"]}, not nonce`);
  }
  if (runtimeData !== undefined && claims["cachet.runtime_data"] !== runtimeData) {
    throw new Refused("cachet.runtime_data is not the expected runtime data");
  }
  return claims;
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      issuer: { type: "string" },
      "accept-warning": { type: "boolean", default: false },
      nonce: { type: "string" },
      "runtime-data-b64": { type: "string" },
    },
  });
  if (!values.issuer || positionals.length !== 1) {
    console.error("usage: node verify-token.mjs --issuer URL [--accept-warning] [--nonce HEX] [--runtime-data-b64 B64URL] TOKEN_FILE|-");
    return 2;
  }
  const token = readFileSync(positionals[0] === "-" ? 0 : positionals[0], "ascii").trim();
  try {
    const claims = await verify(token, values.issuer, {
      acceptWarning: values["accept-warning"],
      nonce: values.nonce,
      runtimeData: values["runtime-data-b64"],
    });
    console.log("ACCEPTED");
    for (const [name, sub] of Object.entries(claims.submods)) {
      console.log(`  ${name}: ${sub["ear.status"]}  vector=${JSON.stringify(sub["ear.trustworthiness-vector"] ?? {})}`);
    }
    console.log(`  iss=${claims.iss} exp=${claims.exp} freshness=${claims["cachet.freshness"]} endorsements=${claims["cachet.endorsements"]}`);
    return 0;
  } catch (e) {
    if (e instanceof Refused) {
      console.log(`REFUSED: ${e.message}`);
      return 1;
    }
    console.error(`error: ${e.message}`);
    return 2;
  }
}

process.exitCode = await main();
