# Cachet default appraisal policy: AWS Nitro Enclaves.
#
# Strict by default: a debug-mode enclave (PCR0..2 all zero) is refused; the
# PCRs (pcr0 image, pcr1 kernel, pcr2 application, pcr3 IAM role, pcr4
# instance, pcr8 signing certificate) are affirmed only when they match the
# reference values, and are a warning ("measurements not appraised") when none are configured.
# Nitro Enclaves isolate memory in the hypervisor rather than encrypting it,
# so this policy makes no runtime-opaque claim.

package cachet.default.nitro

import rego.v1

# The TEE families this policy judges: an attester may name it in
# POST /v1/attest only for evidence of these.
tees := {"nitro"}

# The PCRs compared with reference values ("pcr0" = PCR 0, ...).
measured := ["pcr0", "pcr1", "pcr2", "pcr3", "pcr4", "pcr8"]

# AR4SI instance-identity: the verifier checked the signing key's chain to
# the manufacturer's pinned root, so the attesting instance is recognized.
instance_identity := 2

# The document chains to the pinned AWS Nitro root: genuine Nitro hardware.
hardware := 2

reasons contains r if {
	r := {"rule": "platform", "outcome": "affirming", "detail": sprintf("genuine AWS Nitro module %s", [object.get(input.claims, "module_id", "?")])}
}

config_needed := false

# ---------------------------------------------------------------------------
# Debug mode: refused. A debuggable enclave exposes its memory to the host,
# so nothing it attests to can be trusted.

debug_on if input.claims.debug == true

debug_unknown if not is_boolean(input.claims.debug)

reasons contains r if {
	debug_on
	r := {"rule": "debug", "outcome": "contraindicated", "detail": "debug mode is enabled: PCR0..2 are zero, the enclave runs in debug mode and its console and memory are open to the parent instance"}
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

# ---------------------------------------------------------------------------
# Reference values
#
# data.reference_values.NAME is the array of allowed values of the set NAME,
# as live at the appraisal instant (expired values already removed; a set
# whose values all expired is an empty array: nothing matches it). A set
# named "<tee>.<name>" (e.g. "nitro.pcr0") is preferred to the set
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

# PCR values by index ("pcr0" -> the document's PCR 0), lowercase hex.
observed(name) := lower(v) if {
	startswith(name, "pcr")
	v := object.get(input.claims, "pcrs", {})[substring(name, 3, -1)]
}

value_matches(name, allowed) if observed(name) in allowed

shown(name) := s if {
	s := observed(name)
} else := "(absent from the document)"
