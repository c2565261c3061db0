//! The backend probe on this machine.

use trainer::{BackendKind, probe_backends};

#[test]
fn cpu_is_compiled_and_usable() {
    let statuses = probe_backends();
    // Shown with --nocapture: what this machine offers.
    eprintln!("{statuses:#?}");
    assert_eq!(
        statuses.iter().map(|s| s.name).collect::<Vec<_>>(),
        BackendKind::ALL
    );
    let cpu = &statuses[0];
    assert!(cpu.compiled && cpu.usable, "{cpu:?}");
    assert!(!cpu.software);
    assert!(cpu.detail.contains("flex"), "{cpu:?}");
    for status in &statuses {
        assert_eq!(status.compiled, status.name.is_compiled());
        if !status.compiled {
            assert!(!status.usable);
            assert_eq!(
                status.detail,
                format!("not compiled in (build with --features {})", status.name)
            );
        }
    }
    let best = BackendKind::best_available(&statuses);
    assert!(statuses.iter().any(|s| s.name == best && s.usable));
    let json = serde_json::to_value(cpu).expect("serializes");
    assert_eq!(json["name"], "cpu");
    assert_eq!(json["usable"], true);
}
