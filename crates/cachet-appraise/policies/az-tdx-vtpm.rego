# Cachet default appraisal policy: Azure confidential VMs on Intel TDX (TD quote + HCL report + vTPM).
#
# The TD quote is verified to Intel's root and binds the vTPM key that signed
# the PCR quote. Strict by default: a debug TD is refused; TCB status
# UpToDate is affirming, the *Needed and OutOfDate statuses a warning,
# Revoked refused; the TD measurements (mr_td, rtmr0..3) and the vTPM PCRs
# ("pcr0".."pcr23") are affirmed only when they match the reference values,
# and are a warning ("measurements not appraised") when none are configured.

package cachet.default.az_tdx_vtpm

import rego.v1

# The TEE families this policy judges: an attester may name it in
# POST /v1/attest only for evidence of these.
tees := {"az-tdx-vtpm"}

# The claims compared with reference values ("pcrN" = vTPM PCR N).
measured := array.concat(["mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_config_id", "mr_owner", "mr_owner_config"], ["pcr0", "pcr1", "pcr2", "pcr3", "pcr4", "pcr5", "pcr6", "pcr7", "pcr8", "pcr9", "pcr10", "pcr11", "pcr12", "pcr13", "pcr14", "pcr15", "pcr16", "pcr17", "pcr18", "pcr19", "pcr20", "pcr21", "pcr22", "pcr23"])

# AR4SI instance-identity: the verifier checked the signing key's chain to
# the manufacturer's pinned root, so the attesting instance is recognized.
instance_identity := 2

# The Azure VM configuration in the HCL report: a VM booted without secure
# boot may have run unmeasured boot code before the vTPM measurements.
config_needed if object.get(object.get(object.get(input.claims, "hcl", {}), "vm_configuration", {}), "secure_boot", true) == false

reasons contains r if {
	object.get(object.get(object.get(input.claims, "hcl", {}), "vm_configuration", {}), "secure_boot", true) == false
	r := {"rule": "configuration", "outcome": "warning", "detail": "the Azure VM configuration reports secure boot disabled"}
}

# ---------------------------------------------------------------------------
# Platform TCB (Intel's TCB status, from TCB Info and QE Identity)
#
# AR4SI hardware: 2 genuine and current, 32 genuine with known
# vulnerabilities (patch or mitigation available), 96 revoked, 97 unknown.
# AR4SI configuration: 32 when Intel says the platform configuration needs
# changing (e.g. hyper-threading or memory integrity settings).

tcb_status := object.get(input.claims, "tcb_status", object.get(hw_claims, "tcb_status", ""))

tcb_table := {
	"UpToDate": {"hardware": 2, "config_needed": false, "outcome": "affirming"},
	"SWHardeningNeeded": {"hardware": 32, "config_needed": false, "outcome": "warning"},
	"ConfigurationNeeded": {"hardware": 2, "config_needed": true, "outcome": "warning"},
	"ConfigurationAndSWHardeningNeeded": {"hardware": 32, "config_needed": true, "outcome": "warning"},
	"OutOfDate": {"hardware": 32, "config_needed": false, "outcome": "warning"},
	"OutOfDateConfigurationNeeded": {"hardware": 32, "config_needed": true, "outcome": "warning"},
	"TDRelaunchAdvised": {"hardware": 32, "config_needed": false, "outcome": "warning"},
	"TDRelaunchAdvisedConfigurationNeeded": {"hardware": 32, "config_needed": true, "outcome": "warning"},
	"Revoked": {"hardware": 96, "config_needed": false, "outcome": "contraindicated"},
}

hardware := tcb_table[tcb_status].hardware

default hardware := 97

config_needed if tcb_table[tcb_status].config_needed

advisory_ids := object.get(input.claims, "advisory_ids", object.get(hw_claims, "advisory_ids", []))

advisories := "none" if {
	count(advisory_ids) == 0
} else := concat(", ", advisory_ids)

reasons contains r if {
	entry := tcb_table[tcb_status]
	r := {"rule": "tcb_status", "outcome": entry.outcome, "detail": sprintf("TCB status %s (advisories: %s)", [tcb_status, advisories])}
}

reasons contains r if {
	not tcb_table[tcb_status]
	r := {"rule": "tcb_status", "outcome": "contraindicated", "detail": sprintf("TCB status %q is not one Intel defines: the platform TCB cannot be appraised", [tcb_status])}
}

reasons contains r if {
	config_needed
	r := {"rule": "configuration", "outcome": "warning", "detail": sprintf("Intel reports the platform configuration needs changing (%s)", [tcb_status])}
}

# The debug flag of the hardware report.
debug_claim := object.get(input.claims, "debug", object.get(hw_claims, "debug", null))

debug_on if debug_claim == true

debug_unknown if not is_boolean(debug_claim)

reasons contains r if {
	debug_on
	r := {"rule": "debug", "outcome": "contraindicated", "detail": "debug mode is enabled: the host can read and change the TD's memory"}
}

reasons contains r if {
	debug_claim == false
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
# named "<tee>.<name>" (e.g. "az-tdx-vtpm.mr_td") is preferred to the set
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

# Azure evidence carries the hardware report's claims and the vTPM's PCRs:
# a name "pcrN" is a vTPM PCR, any other name a claim of the hardware report
# (at the top of the claims, or under "tdx").
hw_claims := object.get(input.claims, "tdx", input.claims)

pcr_banks := object.get(input.claims, "pcrs", object.get(object.get(input.claims, "tpm", {}), "pcrs", {}))

pcr_values(name) := {lower(v) |
	regex.match(`^pcr[0-9]+$`, name)
	idx := substring(name, 3, -1)
	some alg, bank in pcr_banks
	alg != "sha1"
	v := bank[idx]
}

report_value(name) := lower(v) if {
	not regex.match(`^pcr[0-9]+$`, name)
	v := object.get(input.claims, name, hw_claims[name])
	is_string(v)
}

value_matches(name, allowed) if {
	some v in pcr_values(name)
	v in allowed
}

value_matches(name, allowed) if report_value(name) in allowed

shown(name) := concat(" / ", sort([v | some v in pcr_values(name)])) if {
	count(pcr_values(name)) > 0
} else := s if {
	s := report_value(name)
} else := "(absent from the claims)"
