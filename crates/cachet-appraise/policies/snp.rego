# Cachet default appraisal policy: AMD SEV-SNP guests.
#
# Strict by default: a guest whose policy allows debugging is refused; a
# guest that allows a migration agent is a warning; the launch measurement
# and the other identity fields (measurement, host_data, id_key_digest,
# author_key_digest, family_id, image_id) are affirmed only when they match
# the reference values, and are a warning ("measurements not appraised") when none are configured.

package cachet.default.snp

import rego.v1

# The TEE families this policy judges: an attester may name it in
# POST /v1/attest only for evidence of these.
tees := {"snp"}

# The claims compared with reference values of the same name.
measured := ["measurement", "host_data", "id_key_digest", "author_key_digest", "family_id", "image_id"]

# AR4SI instance-identity: the verifier checked the signing key's chain to
# the manufacturer's pinned root, so the attesting instance is recognized.
instance_identity := 2

# ---------------------------------------------------------------------------
# Platform: the verifier checked the VCEK/VLEK chain to AMD's pinned ARK and
# that the certificate's TCB is the report's reported TCB. AMD publishes no
# "TCB status"; require a minimum TCB with your own policy if you need one.

hardware := 2

reasons contains r if {
	r := {"rule": "platform", "outcome": "affirming", "detail": sprintf("genuine AMD %s, reported TCB %s, signed by %s", [object.get(input.claims, "product", "?"), object.get(object.get(input.claims, "reported_tcb", {}), "raw", "?"), object.get(input.claims, "signing_key", "?")])}
}

# Hardware is affirmed only when revocation was checked: without AMD's CRL a
# revoked ASK/VCEK would pass, so that is a warning.
reasons contains r if {
	not input.claims.crl_checked == true
	r := {"rule": "revocation", "outcome": "warning", "detail": "revocation not checked: no AMD CRL was supplied, so a revoked ASK/VCEK would not be noticed; supply AMD's CRL for the ASK/ASVK with the endorsements"}
}

reasons contains r if {
	input.claims.crl_checked == true
	r := {"rule": "revocation", "outcome": "affirming", "detail": "the ASK/VCEK are not on AMD's CRL"}
}

# A migration agent may export the guest's memory: a configuration warning.
config_needed if object.get(object.get(input.claims, "policy_flags", {}), "migration_agent_allowed", false) == true

reasons contains r if {
	config_needed
	r := {"rule": "configuration", "outcome": "warning", "detail": "the guest policy allows a migration agent"}
}

# ---------------------------------------------------------------------------
# Debug mode: refused. A debuggable SEV-SNP guest exposes its memory to the host,
# so nothing it attests to can be trusted.

debug_on if input.claims.debug == true

debug_unknown if not is_boolean(input.claims.debug)

reasons contains r if {
	debug_on
	r := {"rule": "debug", "outcome": "contraindicated", "detail": "debug mode is enabled: the host can read and change the guest's memory"}
}

reasons contains r if {
	input.claims.debug == false
	r := {"rule": "debug", "outcome": "affirming", "detail": "debug mode is off"}
}

reasons contains r if {
	debug_unknown
	r := {"rule": "debug", "outcome": "warning", "detail": "the claims do not say whether debug mode is on"}
}

# AR4SI configuration: 96 debug (unsupportable), 36 debug state unknown,
# 32 configuration change needed, 2 approved.
configuration := 96 if {
	debug_on
} else := 36 if {
	debug_unknown
} else := 32 if {
	config_needed
} else := 2

# AR4SI runtime-opaque: memory encrypted by the CPU (2), visible when debug is on (96).
runtime_opaque := 96 if {
	debug_on
} else := 2

# ---------------------------------------------------------------------------
# Reference values
#
# data.reference_values.NAME is the array of allowed values of the set NAME,
# as live at the appraisal instant (expired values already removed; a set
# whose values all expired is an empty array: nothing matches it). A set
# named "<tee>.<name>" (e.g. "snp.measurement") is preferred to the set
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

# A claim as reference values spell it: hex in lowercase, numbers in decimal.
observed(name) := lower(v) if {
	v := input.claims[name]
	is_string(v)
}

observed(name) := format_int(v, 10) if {
	v := input.claims[name]
	is_number(v)
}

value_matches(name, allowed) if observed(name) in allowed

shown(name) := s if {
	s := observed(name)
} else := "(absent from the claims)"
