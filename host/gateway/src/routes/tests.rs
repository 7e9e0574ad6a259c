use std::collections::HashMap;
use std::path::Path;

use super::*;

fn routes(src: &str) -> Routes {
    let config = GatewayConfig::from_str_with_env(src, Path::new("gw.yaml"), |_| None).unwrap();
    Routes::new(&config).unwrap()
}

const PROVIDERS: &str = "\
providers:
  a: { type: plugin, provider-type: echo }
  b: { type: plugin }
  c: { type: plugin }
  up: { type: openai-compatible, base-url: 'http://127.0.0.1:9/v1' }
";

fn names(plan: &[Attempt]) -> Vec<(String, String)> {
    plan.iter().map(|a| (a.provider.clone(), a.model.clone())).collect()
}

fn pair(p: &str, m: &str) -> (String, String) {
    (p.to_string(), m.to_string())
}

#[test]
fn unweighted_targets_keep_their_order_and_models() {
    let r =
        routes(&format!("{PROVIDERS}routes:\n  - model: m\n    targets: [b, {{ provider: up, model: real-m }}, a]\n"));
    let plan = r.plan("m").unwrap();
    assert_eq!(names(&plan), [pair("b", "m"), pair("up", "real-m"), pair("a", "m")]);
    assert!(matches!(&plan[0].target, Target::Plugin { provider_type } if provider_type == "b"));
    assert!(matches!(&plan[2].target, Target::Plugin { provider_type } if provider_type == "echo"));
    let Target::Upstream(up) = &plan[1].target else { panic!("{:?}", plan[1]) };
    assert_eq!(up.config().base_url, "http://127.0.0.1:9/v1");
    // The upstream client is built once per config: every plan shares it.
    let Target::Upstream(again) = &r.plan("m").unwrap()[1].target else { panic!() };
    assert!(Arc::ptr_eq(up, again));
}

#[test]
fn unknown_models_have_no_plan_without_a_catch_all() {
    let r = routes(&format!("{PROVIDERS}routes:\n  - {{ model: m, targets: [a] }}\n"));
    assert!(r.plan("other").is_none());
    assert!(!r.has_catch_all());
}

#[test]
fn the_catch_all_serves_other_models_under_their_own_names() {
    let r = routes(&format!(
        "{PROVIDERS}routes:\n  - {{ model: m, targets: [a] }}\n  - model: '*'\n    targets: [b, {{ provider: up, model: fixed }}]\n"
    ));
    assert_eq!(names(&r.plan("m").unwrap()), [pair("a", "m")]);
    assert_eq!(names(&r.plan("gpt-anything").unwrap()), [pair("b", "gpt-anything"), pair("up", "fixed")]);
    assert!(r.has_catch_all());
    let ids: Vec<String> = r.models().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["m"], "`*` is not a model");
}

#[test]
fn models_lists_routes_in_file_order_with_their_first_provider() {
    let r = routes(&format!(
        "{PROVIDERS}routes:\n  - {{ model: z, targets: [c, a] }}\n  - {{ model: a, targets: [up] }}\n  - {{ model: '*', targets: [a] }}\n"
    ));
    assert_eq!(
        r.models(),
        vec![ModelEntry { id: "z".into(), owned_by: "c".into() }, ModelEntry { id: "a".into(), owned_by: "up".into() }]
    );
}

#[test]
fn weighted_targets_come_first_drawn_by_weight() {
    let r = routes(&format!(
        "{PROVIDERS}routes:\n  - model: m\n    targets:\n      - {{ provider: a, weight: 1 }}\n      - c\n      - {{ provider: b, weight: 3 }}\n"
    ));
    let mut first = HashMap::new();
    let n = 8000;
    for _ in 0..n {
        let plan = names(&r.plan("m").unwrap());
        assert_eq!(plan.len(), 3);
        assert_eq!(plan[2], pair("c", "m"), "the unweighted target comes after the weighted ones");
        *first.entry(plan[0].0.clone()).or_insert(0usize) += 1;
    }
    // b (weight 3) comes first about 3/4 of the time: expected 6000, a
    // standard deviation of about 39, so 5700..6300 is over 7 of them.
    let b = first["b"];
    assert!((5700..=6300).contains(&b), "b first {b} times out of {n}");
    assert_eq!(first["a"] + b, n);
}

#[test]
fn equal_weights_spread_evenly() {
    let r = routes(&format!(
        "{PROVIDERS}routes:\n  - model: m\n    targets:\n      - {{ provider: a, weight: 5 }}\n      - {{ provider: b, weight: 5 }}\n      - {{ provider: c, weight: 5 }}\n"
    ));
    let mut first = HashMap::new();
    for _ in 0..6000 {
        *first.entry(r.plan("m").unwrap()[0].provider.clone()).or_insert(0usize) += 1;
    }
    // 2000 each expected, standard deviation about 37.
    for p in ["a", "b", "c"] {
        assert!((1750..=2250).contains(&first[p]), "{first:?}");
    }
}
