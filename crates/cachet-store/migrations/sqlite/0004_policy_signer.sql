-- Signed policies (schema v4): who signed each stored policy version.
-- `signer` is JSON `{"subject", "thumbprint", "alg"}` of the policy-signing
-- certificate that verified the upload; `jws` is the compact JWS as it was
-- verified, so the version's signature can be checked again later. Both are
-- NULL for versions stored unsigned (before signing was configured, or on a
-- server without policy-signing certificates). Existing rows keep NULL.
ALTER TABLE policies ADD COLUMN signer TEXT;
ALTER TABLE policies ADD COLUMN jws TEXT;
