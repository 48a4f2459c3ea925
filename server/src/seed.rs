//! The demo flow seeded on first run: a welcome series that uses most step
//! kinds and carries a warning (an SMS long enough to need two messages),
//! so a new installation has something real to look at.

use app::core::FlowDocument;

use crate::store::Store;

pub const DEMO_FLOW: &str = include_str!("demo-flow.json");

/// Seeds the demo once per installation. Returns whether it did.
pub async fn seed_demo(store: &Store) -> anyhow::Result<bool> {
    if !store.first_time("demo_flow_seeded").await? {
        return Ok(false);
    }
    let doc = FlowDocument::from_json(DEMO_FLOW)?;
    let name = doc.name.clone();
    store.create(&name, Some(doc)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use app::core::{validate, Code, Context};

    use super::*;

    #[test]
    fn the_demo_is_publishable_and_warns_about_its_long_sms() {
        let doc = FlowDocument::from_json(DEMO_FLOW).unwrap();
        let findings = validate(&doc, &Context::default());
        assert!(findings.errors.is_empty(), "{:#?}", findings.errors);
        assert!(findings.warnings.iter().any(|w| w.code == Code::SmsMultiSegment && w.step.as_deref() == Some("no_email_sms")));
        let kinds: std::collections::HashSet<_> = doc.steps.iter().map(|s| s.kind.clone()).collect();
        assert!(kinds.len() >= 15, "the demo shows most kinds, has {}", kinds.len());
    }
}
