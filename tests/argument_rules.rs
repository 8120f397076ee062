//! What the input schema publishes of an argument's rules is what the pipeline checks, and a refusal names each
//! argument as the client sends it, never a redacted value (a red team's review of the attribute, round 35).

use std::collections::HashMap;
use std::sync::Arc;

use secure_tools::{MemorySink, Outcome, ToolOutput, ToolSet, secure_tool};
use secure_tools_tests::{caller, request};
use serde_json::json;

/// A street address.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct Address {
    /// At most 10 characters.
    #[validate(length(max = 10))]
    city: String,
}

/// Ships a parcel.
#[secure_tool(scope = "rt.write")]
async fn ship(
    address: Address,
    stops: Vec<Address>,
    back: Option<Address>,
    #[serde(rename = "byName")] by_name: HashMap<String, Address>,
) -> String {
    format!(
        "{} {} {} {}",
        address.city,
        stops.len(),
        back.is_some(),
        by_name.len()
    )
}

/// A red team's: schemars publishes the rules of an argument's own type (`maxLength: 10` on `city`) whether or not
/// anything checks them, and validator checks them only under `#[validate(nested)]`: an 11-character city reached
/// the handler. An argument whose type derives `Validate` (or a list, an `Option` or a map of one) has its type's
/// rules checked, and the refusal names the argument as sent.
#[tokio::test]
async fn the_rules_of_an_arguments_own_type_are_checked_as_published() {
    let set = ToolSet::builder(()).tool::<ship>().build().unwrap();
    let schema = set.definition("ship").unwrap().input_schema();
    assert_eq!(
        schema["$defs"]["Address"]["properties"]["city"]["maxLength"], 10,
        "{schema:?}"
    );
    let who = caller("alice", "rt.write");
    let long = "x".repeat(11);
    let fine = json!({"city": "Oslo"});
    let bad = json!({"city": long});
    for (id, args, path) in [
        (
            1,
            json!({"address": bad, "stops": [], "byName": {}}),
            "`address.city`",
        ),
        (
            2,
            json!({"address": fine, "stops": [fine, bad], "byName": {}}),
            "`stops[1].city`",
        ),
        (
            3,
            json!({"address": fine, "stops": [], "back": bad, "byName": {}}),
            "`back.city`",
        ),
        (
            4,
            json!({"address": fine, "stops": [], "byName": {"a": bad}}),
            "`byName[0].city`",
        ),
    ] {
        let response = set
            .call(request(&who, id, "ship", args.clone()))
            .await
            .unwrap();
        assert_eq!(
            response.outcome(),
            Outcome::Invalid,
            "{args}: {:?}",
            response.result()
        );
        let message = response.refusal().unwrap().message();
        assert!(
            message.contains(path) && message.contains("length must be at most 10"),
            "{args}: {message}"
        );
    }
    let response = set
        .call(request(
            &who,
            5,
            "ship",
            json!({"address": fine, "stops": [fine], "back": fine, "byName": {"a": fine}}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Ok, "{:?}", response.refusal());
}

/// Tags a thing.
#[secure_tool(scope = "rt.write")]
async fn tag(
    /// Two or three tags.
    #[validate(length(min = 2, max = 3))]
    tags: HashMap<String, String>,
    /// Exactly one label.
    #[validate(length(equal = 1))]
    labels: Option<std::collections::BTreeMap<String, u8>>,
) -> String {
    format!("{} {}", tags.len(), labels.map_or(0, |l| l.len()))
}

/// A red team's: validator counts a map's entries for `length`, schemars writes length keywords for strings and
/// arrays only: the schema said nothing, and a fourth tag was refused. A map's length is published as its number of
/// properties.
#[tokio::test]
async fn a_maps_length_is_published_as_its_number_of_properties() {
    let set = ToolSet::builder(()).tool::<tag>().build().unwrap();
    let properties = &set.definition("tag").unwrap().input_schema()["properties"];
    assert_eq!(properties["tags"]["minProperties"], 2, "{properties}");
    assert_eq!(properties["tags"]["maxProperties"], 3, "{properties}");
    assert_eq!(properties["labels"]["minProperties"], 1, "{properties}");
    assert_eq!(properties["labels"]["maxProperties"], 1, "{properties}");
    let who = caller("alice", "rt.write");
    let response = set
        .call(request(
            &who,
            1,
            "tag",
            json!({"tags": {"a": "1", "b": "2", "c": "3", "d": "4"}}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Invalid);
    let response = set
        .call(request(
            &who,
            2,
            "tag",
            json!({"tags": {"a": "1", "b": "2"}, "labels": {"x": 1}}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Ok, "{:?}", response.refusal());
}

/// Sets a gain.
#[secure_tool(scope = "rt.read", read_only)]
async fn gain(
    gain: f32,
    fallback: Option<f32>,
    #[validate(range(max = 2.0))] capped: Option<f32>,
    levels: Option<Vec<f32>>,
) -> String {
    format!("{gain} {fallback:?} {capped:?} {levels:?}")
}

/// A red team's: a JSON number beyond `f32`'s range (`1e39`) decoded as infinity and reached the handler. An `f32`
/// argument's schema gives `f32`'s range, and a number beyond it is refused.
#[tokio::test]
async fn an_f32_argument_beyond_its_range_is_refused_not_infinite() {
    let set = ToolSet::builder(()).tool::<gain>().build().unwrap();
    let properties = &set.definition("gain").unwrap().input_schema()["properties"];
    assert_eq!(
        properties["gain"]["maximum"],
        f64::from(f32::MAX),
        "{properties}"
    );
    assert_eq!(
        properties["gain"]["minimum"],
        f64::from(f32::MIN),
        "{properties}"
    );
    let who = caller("a", "rt.read");
    for (id, args, path) in [
        (1, json!({"gain": 1e39}), "`gain`"),
        (2, json!({"gain": -1e39}), "`gain`"),
        (3, json!({"gain": 1.0, "fallback": 1e39}), "`fallback`"),
    ] {
        let response = set
            .call(request(&who, id, "gain", args.clone()))
            .await
            .unwrap();
        assert_eq!(
            response.outcome(),
            Outcome::Invalid,
            "{args}: {:?}",
            response.result()
        );
        let message = response.refusal().unwrap().message();
        assert!(
            message.contains(path) && message.contains("must be between"),
            "{message}"
        );
    }
    let response = set
        .call(request(
            &who,
            4,
            "gain",
            json!({"gain": 3.0e38, "fallback": null}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Ok, "{:?}", response.refusal());
}

fn bad_pin(pin: &str) -> Result<(), validator::ValidationError> {
    Err(validator::ValidationError::new("bad_pin").with_message(format!("{pin}?").into())).map_err(
        |mut error| {
            error.code = format!("bad_pin_{pin}").into();
            error
        },
    )
}

fn pin_as_limit(pin: &str) -> Result<(), validator::ValidationError> {
    let mut error = validator::ValidationError::new("length");
    error.add_param("max".into(), &pin);
    Err(error)
}

/// Unlocks.
#[secure_tool(scope = "rt.write", audit_redact = ["pin", "pin2"])]
async fn unlock(
    #[validate(custom(function = "bad_pin"))] pin: String,
    #[validate(custom(function = "pin_as_limit"))] pin2: String,
    #[validate(custom(function = "bad_pin"))] note: String,
) -> String {
    format!("{}{}{note}", pin.len(), pin2.len())
}

/// A red team's: for a redacted argument a custom validator's message was withheld, but its code and its limits,
/// which it may make of the value, were shown (`failed the bad_pin_hunter2 check`, `at most "swordfish"`).
#[tokio::test]
async fn a_custom_validators_code_and_limits_do_not_show_a_redacted_value() {
    let sink = MemorySink::new();
    let set = ToolSet::builder(())
        .tool::<unlock>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let response = set
        .call(request(
            &caller("a", "rt.write"),
            1,
            "unlock",
            json!({"pin": "hunter2", "pin2": "swordfish", "note": "memo"}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Invalid);
    let message = response.refusal().unwrap().message().to_owned();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!message.contains("swordfish"), "{message}");
    assert!(
        message.contains("`pin`: failed a check of the tool's own"),
        "{message}"
    );
    assert!(
        message.contains("`pin2`: length is out of bounds"),
        "{message}"
    );
    // An argument not redacted is described by the rule's own words.
    assert!(message.contains("`note`: memo?"), "{message}");
    let text = serde_json::to_string(&sink.records()).unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("swordfish"),
        "{text}"
    );
}

/// Needs a long, URL-shaped scope (122 bytes).
#[secure_tool(
    scope = "api://6e3a9c4f-2b1d-4f5e-9a7b-0c1d2e3f4a5b/tenants/0f8fad5b-d9cb-469f-a165-70867728950e/projects/Tickets.ReadWrite.All.Own"
)]
async fn long_scoped() -> String {
    String::new()
}

/// A red team's: codes are cut to 128 bytes in the record, so `missing_scope:` and a scope of 122 bytes was recorded
/// cut short, unlike the code the caller was told, and alike for two scopes differing at the end.
#[tokio::test]
async fn a_missing_scope_is_recorded_whole_however_long() {
    let sink = MemorySink::new();
    let set = ToolSet::builder(())
        .tool::<long_scoped>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let response = set
        .call(request(&caller("a", ""), 1, "long_scoped", json!({})))
        .await
        .unwrap();
    let code = response.error_code().unwrap().to_owned();
    assert!(code.ends_with("Tickets.ReadWrite.All.Own"), "{code}");
    let records = sink.records();
    let call = records.iter().find(|r| r["event"] == "tool_call").unwrap();
    assert_eq!(call["error"], code.as_str());
}

/// Opens a file.
#[secure_tool(scope = "rt.read", read_only)]
async fn open_file(
    #[serde(rename = "fileName")]
    #[validate(length(max = 3))]
    file_name: String,
    #[validate(length(max = 3))] r#type: String,
) -> String {
    format!("{file_name} {}", r#type)
}

/// A red team's: validator names a failed rule by the Rust field (`file_name`, `r#type`), a name the client never
/// sent; it is named as sent (`fileName`, `type`).
#[tokio::test]
async fn a_failed_rule_names_the_argument_as_sent() {
    let set = ToolSet::builder(()).tool::<open_file>().build().unwrap();
    let response = set
        .call(request(
            &caller("a", "rt.read"),
            1,
            "open_file",
            json!({"fileName": "abcd", "type": "abcd"}),
        ))
        .await
        .unwrap();
    let message = response.refusal().unwrap().message().to_owned();
    assert_eq!(
        message,
        "`fileName`: length must be at most 3; `type`: length must be at most 3"
    );
    match set
        .call(request(
            &caller("a", "rt.read"),
            2,
            "open_file",
            json!({"fileName": "abc", "type": "x"}),
        ))
        .await
        .unwrap()
        .result()
    {
        Ok(ToolOutput::Text(text)) => assert_eq!(text, "abc x"),
        other => panic!("{other:?}"),
    }
}

/// Extra details, flattened into the arguments.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct Extra {
    /// At most 10 characters.
    #[serde(default)]
    #[validate(length(max = 10))]
    note: Option<String>,
}

/// Delivers.
#[secure_tool(scope = "rt.write")]
async fn deliver(
    boxed: Option<Box<Address>>,
    shared: Option<Arc<Address>>,
    #[serde(flatten)] extra: Extra,
    #[validate(skip)] unchecked: Option<Address>,
    #[validate(nested = false)] also_unchecked: Option<Address>,
) -> String {
    format!(
        "{} {} {:?} {} {}",
        boxed.is_some(),
        shared.is_some(),
        extra.note,
        unchecked.is_some(),
        also_unchecked.is_some()
    )
}

/// A red team's (round 36): the rules of an argument's own type were checked as itself, in a list, a map or an
/// `Option`, but not through `Box` or `Arc`, nor in a flattened struct; and `#[validate(skip)]` was overridden, where
/// `nested = false` was honoured.
#[tokio::test]
async fn the_rules_of_an_arguments_own_type_are_checked_through_box_arc_and_flatten_unless_skipped()
{
    let set = ToolSet::builder(()).tool::<deliver>().build().unwrap();
    let who = caller("alice", "rt.write");
    let bad = json!({"city": "x".repeat(11)});
    for (id, args) in [
        (1, json!({"boxed": bad})),
        (2, json!({"shared": bad})),
        (3, json!({"note": "x".repeat(11)})),
    ] {
        let response = set
            .call(request(&who, id, "deliver", args.clone()))
            .await
            .unwrap();
        assert_eq!(
            response.outcome(),
            Outcome::Invalid,
            "{args}: {:?}",
            response.result()
        );
    }
    let response = set
        .call(request(
            &who,
            4,
            "deliver",
            json!({"unchecked": bad, "also_unchecked": bad}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Ok, "{:?}", response.refusal());
}

/// Swaps two names.
#[secure_tool(scope = "rt.read", read_only)]
async fn swapped(
    #[serde(rename = "b")]
    #[validate(length(max = 3))]
    a: String,
    #[serde(rename = "a")]
    #[validate(length(max = 3))]
    b: String,
) -> String {
    format!("{a} {b}")
}

/// A red team's (round 36): errors renamed one argument at a time followed each other when two renames crossed
/// (`a` sent as `b`, `b` as `a`): the long value sent as `b` was named `a`, and of two failures one was lost.
#[tokio::test]
async fn crossed_renames_name_each_failed_rule_by_the_argument_sent() {
    let set = ToolSet::builder(()).tool::<swapped>().build().unwrap();
    let who = caller("a", "rt.read");
    let response = set
        .call(request(
            &who,
            1,
            "swapped",
            json!({"b": "toolong", "a": "ok"}),
        ))
        .await
        .unwrap();
    assert_eq!(
        response.refusal().unwrap().message(),
        "`b`: length must be at most 3"
    );
    let response = set
        .call(request(
            &who,
            2,
            "swapped",
            json!({"b": "toolong", "a": "toolong"}),
        ))
        .await
        .unwrap();
    assert_eq!(
        response.refusal().unwrap().message(),
        "`a`: length must be at most 3; `b`: length must be at most 3"
    );
}

/// Many places.
#[secure_tool(scope = "rt.write")]
async fn many(places: Vec<Address>) -> String {
    places.len().to_string()
}

/// A red team's (round 36): a list of many failing items had every failure described, then the message cut to
/// its bound. The first 16 are named (within the bound) and the rest counted.
#[tokio::test]
async fn a_refusal_names_the_first_failures_and_counts_the_rest() {
    let set = ToolSet::builder(()).tool::<many>().build().unwrap();
    let places: Vec<_> = (0..100).map(|_| json!({"city": "x".repeat(11)})).collect();
    let response = set
        .call(request(
            &caller("a", "rt.write"),
            1,
            "many",
            json!({"places": places}),
        ))
        .await
        .unwrap();
    let message = response.refusal().unwrap().message().to_owned();
    assert_eq!(
        message.matches("length must be at most 10").count(),
        16,
        "{message}"
    );
    assert!(message.ends_with("; and 84 more"), "{message}");
    assert!(message.len() <= 1024 + '…'.len_utf8(), "{}", message.len());
}
