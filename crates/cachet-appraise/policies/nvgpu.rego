# Cachet default appraisal policy: NVIDIA H100 (Hopper) GPUs in confidential-computing mode.
#
# The verifier checked each GPU's SPDM measurement report to NVIDIA's pinned
# device root and compared its measurements with the driver and VBIOS RIMs
# (NVIDIA's signed golden values). Executables are affirmed when every GPU
# matched both RIMs, or when the configured reference sets (e.g.
# "driver_version", "vbios_version") match; a value outside a configured set
# is a warning. Revocation of the device certificates needs an
# OCSP response; when none was supplied (or it covers only some certificates)
# the appraisal is a warning: hardware is affirmed only when revocation was checked.

package cachet.default.nvgpu

import rego.v1

# The TEE families this policy judges: an attester may name it in
# POST /v1/attest only for evidence of these.
tees := {"nvgpu"}

# The per-GPU claims compared with reference values of the same name.
measured := ["driver_version", "vbios_version", "chip", "project", "project_sku", "chip_sku"]

# Every GPU of the evidence (one report, or a set under "gpus").
gpus := input.claims.gpus if {
	is_array(input.claims.gpus)
} else := [input.claims]

# AR4SI instance-identity: the verifier checked the signing key's chain to
# the manufacturer's pinned root, so the attesting instance is recognized.
instance_identity := 2

# Each GPU's report chains to the pinned NVIDIA device identity root.
hardware := 2

reasons contains r if {
	r := {"rule": "platform", "outcome": "affirming", "detail": sprintf("%d genuine NVIDIA GPU(s)", [count(gpus)])}
}

reasons contains r if {
	object.get(input.claims, "revocation_checked", false) == false
	r := {"rule": "revocation", "outcome": "warning", "detail": "revocation not checked: no OCSP response was supplied for the device certificates; supply an OCSP response for each certificate with the endorsements"}
}

# Stored OCSP responses covered only some certificates of the chains.
reasons contains r if {
	object.get(input.claims, "revocation_checked", false) == "partial"
	r := {"rule": "revocation", "outcome": "warning", "detail": "revocation not checked for every certificate: stored OCSP responses cover only some of the device/RIM certificates"}
}

reasons contains r if {
	object.get(input.claims, "revocation_checked", false) == true
	r := {"rule": "revocation", "outcome": "affirming", "detail": "a verified OCSP response says every device/RIM certificate is good"}
}

# RIM comparison: each GPU must have matched both the driver and the VBIOS RIM
# (the verifier says "match" only then; a withheld RIM is "not_appraised").
rim_incomplete contains i if {
	some i, g in gpus
	object.get(g, "rim_appraisal", "none") != "driver+vbios"
}

rim_incomplete contains i if {
	some i, g in gpus
	object.get(g, "rim_status", "not_appraised") != "match"
}

rim_incomplete contains i if {
	some i in rim_mismatch
}

# A GPU whose measurements differ from an applicable, authentic NVIDIA RIM
# runs firmware NVIDIA does not endorse for that release: refused (the
# verifier reports this as rim_status "mismatch", naming the indices).
rim_mismatch contains i if {
	some i, g in gpus
	object.get(g, "rim_status", "not_appraised") == "mismatch"
}

reasons contains r if {
	some i in rim_mismatch
	r := {"rule": sprintf("rim.gpu%d", [i]), "outcome": "contraindicated", "detail": "measurements differ from NVIDIA's golden values (RIM) for this driver/VBIOS release"}
}

reasons contains r if {
	some i, g in gpus
	not i in rim_incomplete
	r := {"rule": sprintf("rim.gpu%d", [i]), "outcome": "affirming", "detail": "measurements match the driver and VBIOS RIMs"}
}

rims_complete if {
	count(gpus) > 0
	count(rim_incomplete) == 0
}

# Without both RIMs the GPU's firmware measurements were not (fully)
# compared with golden values: no claim from the RIMs, as for any
# measurement without reference values.
reasons contains r if {
	some i in rim_incomplete
	not i in rim_mismatch
	r := {"rule": sprintf("rim.gpu%d", [i]), "outcome": "none", "detail": sprintf("measurements compared with NVIDIA's RIMs: %s (driver and VBIOS RIMs are both needed)", [object.get(gpus[i], "rim_appraisal", "none")])}
}

# A GPU in CC mode has no debug state in its claims beyond the verifier's
# "debug" (false once the RIMs matched); refuse it if ever true.
debug_on if input.claims.debug == true

debug_on if {
	some g in gpus
	g.debug == true
}

configuration := 96 if debug_on

reasons contains r if {
	debug_on
	r := {"rule": "debug", "outcome": "contraindicated", "detail": "a GPU reports debug mode"}
}

# ---------------------------------------------------------------------------
# Reference values
#
# data.reference_values.NAME is the array of allowed values of the set NAME,
# as live at the appraisal instant (expired values already removed; a set
# whose values all expired is an empty array: nothing matches it). A set
# named "<tee>.<name>" (e.g. "nvgpu.driver_version") is preferred to the set
# "<name>", so one store can hold values for several families.

# The reference set of each measurement that has one: "<tee>.<name>" when
# present, else "<name>". (Rules are evaluated once per appraisal; this is
# the only place the sets are looked up.)
refs := data.reference_values

sets[name] := s if {
	some name in measured
	raw := object.get(refs, concat(".", [input.tee, name]), object.get(refs, name, null))
	raw != null
	# Compared as the claims are, in lower case: NVIDIA writes VBIOS
	# versions "96.00.5E.00.01", nvidia-smi "96.00.5e.00.01".
	s := [lower(x) | some x in raw; is_string(x)]
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
	count(rim_mismatch) > 0
} else := 96 if {
	count(mismatched) > 0
	mismatch_outcome == "contraindicated"
} else := 33 if {
	count(mismatched) > 0
} else := 2 if {
	count(matched) > 0
} else := 2 if {
	rims_complete
} else := 96 if {
	require_reference_values
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
	not rims_complete
} else := "none" if {
	rims_complete
} else := "warning"

reasons contains r if {
	count(configured) == 0
	r := {"rule": "reference_values", "outcome": unconfigured_outcome, "detail": sprintf("no reference values for any of %s: measurements not appraised", [concat(", ", measured)])}
}

# A GPU claim as reference values spell it (lowercase).
gpu_value(g, name) := lower(v) if {
	v := g[name]
	is_string(v)
}

# Every GPU's value must be allowed.
value_matches(name, allowed) if {
	count(gpus) > 0
	every g in gpus {
		gpu_value(g, name) in allowed
	}
}

gpu_values(name) := {v | v := gpu_value(gpus[_], name)}

shown(name) := concat(" / ", sort(gpu_values(name))) if {
	count(gpu_values(name)) > 0
} else := "(absent from the claims)"
