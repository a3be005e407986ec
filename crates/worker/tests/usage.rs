//! `worker::usage` finds the processes the engine started, both ways it knows.

use std::process::Command;

use worker::usage::{children, scan_children, threads_children};

#[test]
fn children_are_found_and_named_both_ways() {
    let mut child = Command::new("sleep").arg("5").spawn().unwrap();
    let me = std::process::id();
    // The child is named once it has exec'd: until then it may show as "?".
    let named = |f: &Vec<worker::usage::Child>| {
        f.iter()
            .any(|c| c.pid == child.id() && c.command == "sleep")
    };
    let mut found = children(me);
    for _ in 0..100 {
        if named(&found) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        found = children(me);
    }
    let scanned = scan_children(me);
    let listed = threads_children(me);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        found
            .iter()
            .any(|c| c.pid == child.id() && c.command == "sleep"),
        "{found:?}"
    );
    assert!(scanned.contains(&child.id()), "{scanned:?}");
    if let Some(listed) = listed {
        assert!(listed.contains(&child.id()), "{listed:?}");
    }
}
