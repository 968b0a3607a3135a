# Cachet default appraisal policy: TPM 2.0 quotes (AK certificate chain or credential activation).
#
# A TPM attests to the measured boot of its platform, not to memory
# confidentiality, so this policy makes no runtime-opaque claim. The PCRs
# (reference sets "pcr0".."pcr23", or "tpm.pcr7" etc.) are affirmed only when
# they match the reference values, and are a warning ("measurements not appraised")
# when none are configured. SHA-1 banks are never used for appraisal.

package cachet.default.tpm

import rego.v1

# The TEE families this policy judges: an attester may name it in
# POST /v1/attest only for evidence of these.
tees := {"tpm"}

# The PCRs compared with reference values.
measured := ["pcr0", "pcr1", "pcr2", "pcr3", "pcr4", "pcr5", "pcr6", "pcr7", "pcr8", "pcr9", "pcr10", "pcr11", "pcr12", "pcr13", "pcr14", "pcr15", "pcr16", "pcr17", "pcr18", "pcr19", "pcr20", "pcr21", "pcr22", "pcr23"]

# AR4SI instance-identity: the verifier checked the signing key's chain to
# the manufacturer's pinned root, so the attesting instance is recognized.
instance_identity := 2

# The attestation key is bound to a genuine TPM (an AK certificate chain or credential activation).
hardware := 2

reasons contains r if {
	r := {"rule": "platform", "outcome": "affirming", "detail": sprintf("attestation key trusted through %s", [object.get(input.claims, "ak_trust", "an AK certificate chain or credential activation")])}
}

# A TPM has no debug mode; debug is refused if a verifier ever reports one.
configuration := 96 if input.claims.debug == true

reasons contains r if {
	input.claims.debug == true
	r := {"rule": "debug", "outcome": "contraindicated", "detail": "debug mode is enabled"}
}

# ---------------------------------------------------------------------------
# Reference values
#
# data.reference_values.NAME is the array of allowed values of the set NAME,
# as live at the appraisal instant (expired values already removed; a set
# whose values all expired is an empty array: nothing matches it). A set
# named "<tee>.<name>" (e.g. "tpm.pcr7") is preferred to the set
# "<name>", so one store can hold values for several families.

# The reference set of each measurement that has one: "<tee>.<name>" when
# present, else "<name>". (Rules are evaluated once per appraisal; this is
# the only place the sets are looked up.)
refs := data.reference_values

sets[name] := s if {
	some name in measured
	s := object.get(refs, concat(".", [input.tee, name]), object.get(refs, name, null))
	s != null
}

configured := {name | some name, _ in sets}

matched contains name if {
	some name, allowed in sets
	value_matches(name, allowed)
}

mismatched contains name if {
	some name, allowed in sets
	not value_matches(name, allowed)
}

# Strictness. Copy this policy and change these two lines to require
# reference values: mismatch_outcome := "contraindicated" refuses a
# measurement outside its set (by default "unrecognized", a warning), and
# require_reference_values := true refuses evidence none of whose
# measurements has a reference set (by default: a warning, "measurements
# not appraised", and no executables claim).
mismatch_outcome := "warning"

require_reference_values := false

# AR4SI executables: 2 every configured set matches, 33 a value is not
# recognized, 96 refused (per the two settings above).
executables := 96 if {
	count(mismatched) > 0
	mismatch_outcome == "contraindicated"
} else := 33 if {
	count(mismatched) > 0
} else := 96 if {
	count(configured) == 0
	require_reference_values
} else := 2 if {
	count(matched) > 0
}

reasons contains r if {
	some name in matched
	r := {"rule": sprintf("reference_values.%s", [name]), "outcome": "affirming", "detail": sprintf("%s %s is an allowed value", [name, shown(name)])}
}

reasons contains r if {
	some name in mismatched
	r := {"rule": sprintf("reference_values.%s", [name]), "outcome": mismatch_outcome, "detail": sprintf("%s %s is not among the %d allowed values", [name, shown(name), count(sets[name])])}
}

unconfigured_outcome := "contraindicated" if {
	require_reference_values
} else := "warning"

reasons contains r if {
	count(configured) == 0
	r := {"rule": "reference_values", "outcome": unconfigured_outcome, "detail": sprintf("no reference values for any of %s: measurements not appraised", [concat(", ", measured)])}
}

# PCR values by index from every quoted bank except SHA-1 (whose collisions
# make it unfit for appraisal). A reference set "pcr7" is matched when PCR 7
# of any of these banks is one of its values.
pcr_banks := object.get(input.claims, "pcrs", {})

pcr_values(name) := {lower(v) |
	startswith(name, "pcr")
	idx := substring(name, 3, -1)
	some alg, bank in pcr_banks
	alg != "sha1"
	v := bank[idx]
}

value_matches(name, allowed) if {
	some v in pcr_values(name)
	v in allowed
}

shown(name) := concat(" / ", sort([v | some v in pcr_values(name)])) if {
	count(pcr_values(name)) > 0
} else := "(not quoted)"
