//! Which reference values each owner's release policies read.
//!
//! Owners (tenants) do not share a namespace: a release policy's
//! `data.reference_values` holds the sets the service's operator shares with
//! its owner, and the owner's own sets (which replace a shared set of the
//! same name), never another owner's. So no tenant can add a value to a set
//! that another tenant's policy trusts.

use std::collections::BTreeMap;
use std::sync::Arc;

use cachet_appraise::ReferenceValues;

/// The reference values of each owner's release policies.
#[derive(Debug, Clone)]
pub struct OwnerReferenceValues {
    /// What an owner without a view of its own reads (sets shared with every owner).
    shared: Arc<ReferenceValues>,
    /// Each owner with sets of its own (or sets shared with it by name).
    by_owner: BTreeMap<String, Arc<ReferenceValues>>,
}

impl Default for OwnerReferenceValues {
    /// No reference values for anyone.
    fn default() -> Self {
        Self::new(ReferenceValues::new(), BTreeMap::new())
    }
}

impl OwnerReferenceValues {
    /// `shared` for every owner not in `by_owner`; each owner in `by_owner`
    /// reads exactly its entry (which should include `shared`).
    pub fn new(shared: ReferenceValues, by_owner: BTreeMap<String, ReferenceValues>) -> Self {
        Self { shared: Arc::new(shared), by_owner: by_owner.into_iter().map(|(o, r)| (o, Arc::new(r))).collect() }
    }

    /// The reference values `owner`'s release policies read.
    pub fn for_owner(&self, owner: &str) -> Arc<ReferenceValues> {
        self.by_owner.get(owner).unwrap_or(&self.shared).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_owner_reads_its_own_view_and_others_the_shared_one() {
        let set = |v: &str| ReferenceValues::from_document(&serde_json::json!({"approved": [v]})).unwrap();
        let views = OwnerReferenceValues::new(set("aa"), BTreeMap::from([("bank-a".to_string(), set("bb"))]));
        assert_eq!(*views.for_owner("bank-a"), set("bb"));
        assert_eq!(*views.for_owner("bank-b"), set("aa"));
        assert_eq!(*OwnerReferenceValues::default().for_owner("x"), ReferenceValues::new());
    }
}
