use super::*;

#[test]
fn breaker_threshold_follows_ecs_formula() {
    let cb = CircuitBreaker {
        enable: true,
        rollback: true,
        threshold: None,
    };
    assert_eq!(cb.threshold_for(1), 3);
    assert_eq!(cb.threshold_for(3), 3);
    assert_eq!(cb.threshold_for(25), 13);
    assert_eq!(cb.threshold_for(400), 200);
    assert_eq!(cb.threshold_for(800), 200);
    let fixed = CircuitBreaker {
        threshold: Some(1),
        ..cb
    };
    assert_eq!(fixed.threshold_for(25), 1);
}

#[test]
fn min_rounds_up_and_max_rounds_down() {
    let c = DeploymentConfig {
        minimum_healthy_percent: 75,
        maximum_percent: 125,
        ..Default::default()
    };
    assert_eq!(c.min_healthy(2), 2); // ceil(1.5)
    assert_eq!(c.max_total(3), 3); // floor(3.75)
    let d = DeploymentConfig {
        minimum_healthy_percent: 50,
        maximum_percent: 200,
        ..Default::default()
    };
    assert_eq!(d.min_healthy(4), 2);
    assert_eq!(d.max_total(4), 8);
}

#[test]
fn output_tail_keeps_the_last_lines_within_the_byte_limit() {
    let text: String = (0..80).map(|i| format!("line {i}\n")).collect();
    let tail = output_tail(&text);
    assert_eq!(tail.len(), LAST_OUTPUT_LINES);
    assert_eq!(tail.last().map(String::as_str), Some("line 79"));
    assert_eq!(tail[0], "line 30");
    let long = format!("start\n{}\n", "x".repeat(3 * LAST_OUTPUT_BYTES));
    let tail = output_tail(&long);
    assert_eq!(tail.len(), 1);
    assert!(tail[0].len() < LAST_OUTPUT_BYTES);
    let big: String = (0..40).map(|i| format!("{i:0>400}\n")).collect();
    let tail = output_tail(&big);
    assert!(tail.iter().map(|l| l.len() + 1).sum::<usize>() <= LAST_OUTPUT_BYTES);
    assert!(tail.last().unwrap().ends_with("39"));
    assert_eq!(exit_signal(137), Some("SIGKILL"));
    assert_eq!(exit_signal(3), None);
}

#[test]
fn names_are_checked() {
    assert!(validate_name("shop").is_ok());
    assert!(validate_name("api-2").is_ok());
    assert!(validate_name("Shop").is_err());
    assert!(validate_name("../x").is_err());
    assert!(validate_name("-x").is_err());
    assert!(validate_name("").is_err());
}
