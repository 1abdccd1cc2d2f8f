//! Per-target options, typed per platform: a target's `options` is a tagged union by platform
//! (`{"platform": "mastodon", "visibility": "unlisted"}`), each platform's variant a struct in
//! its own file that implements [`TargetOptions`] and is named by its spec ([`OptionsSpec`]).
//!
//! One type serves three ends: the post validation checks a target's options against it at
//! creation (unknown fields, wrong types and the platform's own rules, each a problem at its
//! field, so the 422 names `targets[0].options.privacy_level`); the OpenAPI document shows it as
//! that platform's variant of the union; and the adapter reads the same type at publish time
//! ([`parse`]), so an option it does not use cannot be declared.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use super::PlatformError;

/// The field that names the platform a target's options are for.
pub const TAG: &str = "platform";

/// One problem with a target's options: the field (under `options`, empty for the whole object)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionProblem {
    pub field: String,
    pub message: String,
}

impl OptionProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// A platform's per-target options. `Default` is what a target without options publishes with;
/// [`TargetOptions::problems`] adds the platform's rules serde cannot state (a required field,
/// a range, a combination).
pub trait TargetOptions: DeserializeOwned + utoipa::ToSchema + Default {
    fn problems(&self) -> Vec<OptionProblem> {
        Vec::new()
    }
}

/// An options type in the OpenAPI document: its name, its schema, and the schemas it refers to.
pub struct OptionsSchema {
    pub name: Cow<'static, str>,
    pub schema: RefOr<Schema>,
    pub referred: Vec<(String, RefOr<Schema>)>,
}

/// How a platform's spec names its options type (built by [`options_of`]).
pub struct OptionsSpec {
    /// Checks a target's options (the tag removed); empty when they are fine.
    pub check: fn(&Value) -> Vec<OptionProblem>,
    /// The type in the OpenAPI document.
    pub schema: fn() -> OptionsSchema,
}

/// The [`OptionsSpec`] of `T`.
pub const fn options_of<T: TargetOptions>() -> OptionsSpec {
    OptionsSpec { check: check::<T>, schema: schema::<T> }
}

/// Options of a platform that takes none: only the tag (or nothing) is accepted.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

impl TargetOptions for NoOptions {}

fn check<T: TargetOptions>(value: &Value) -> Vec<OptionProblem> {
    match decode::<T>(value) {
        Ok(options) => options.problems(),
        Err(problem) => vec![problem],
    }
}

fn schema<T: TargetOptions>() -> OptionsSchema {
    let mut referred = Vec::new();
    T::schemas(&mut referred);
    OptionsSchema { name: T::name(), schema: T::schema(), referred }
}

/// `value` without its tag, as `T`: null or `{}` is `T::default()`.
fn decode<T: TargetOptions>(value: &Value) -> Result<T, OptionProblem> {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove(TAG);
    }
    if value.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(&value).map_err(|error| {
        let field = error.path().to_string();
        let field = if field == "." { String::new() } else { field };
        OptionProblem::new(field, error.inner().to_string())
    })
}

/// A target's options as `T`, at publish time. They were checked at creation, so a failure here
/// means the stored options predate a change of `T`: refused, with the reason.
pub fn parse<T: TargetOptions>(value: &Value) -> Result<T, PlatformError> {
    decode::<T>(value).map_err(|problem| {
        PlatformError::Permanent(format!("the target's options are invalid: {} {}", problem.field, problem.message))
    })
}

/// The problems of a target's options for an account on `platform` whose spec names `spec`:
/// they must be an object (or absent), tagged with that platform when not empty, and fit its type.
pub fn problems(platform: &str, spec: &OptionsSpec, value: &Value) -> Vec<OptionProblem> {
    let Some(object) = value.as_object() else {
        return if value.is_null() { (spec.check)(value) } else { vec![OptionProblem::new("", "must be an object")] };
    };
    match object.get(TAG) {
        Some(Value::String(tag)) if tag == platform => (spec.check)(value),
        Some(Value::String(tag)) => {
            vec![OptionProblem::new(TAG, format!("these options are for {tag}, but the account is on {platform}"))]
        }
        Some(_) => vec![OptionProblem::new(TAG, "must be a platform's name")],
        None if object.is_empty() => (spec.check)(value),
        None => vec![OptionProblem::new(TAG, format!("must name the platform (\"{platform}\") the options are for"))],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    struct Example {
        title: Option<String>,
        #[serde(default)]
        count: u8,
    }

    impl TargetOptions for Example {
        fn problems(&self) -> Vec<OptionProblem> {
            match &self.title {
                None => vec![OptionProblem::new("title", "is required")],
                Some(_) => Vec::new(),
            }
        }
    }

    const EXAMPLE: OptionsSpec = options_of::<Example>();

    #[test]
    fn options_must_be_tagged_with_the_accounts_platform_and_fit_its_type() {
        assert!(problems("ex", &EXAMPLE, &json!({"platform": "ex", "title": "t"})).is_empty());
        assert_eq!(problems("ex", &EXAMPLE, &json!(null)), [OptionProblem::new("title", "is required")]);
        assert_eq!(problems("ex", &EXAMPLE, &json!({})), [OptionProblem::new("title", "is required")]);
        assert_eq!(problems("ex", &EXAMPLE, &json!([1]))[0].message, "must be an object");
        assert_eq!(problems("ex", &EXAMPLE, &json!({"title": "t"}))[0].field, "platform");
        let other = problems("ex", &EXAMPLE, &json!({"platform": "x", "title": "t"}));
        assert_eq!(other[0].message, "these options are for x, but the account is on ex");
        let wrong = problems("ex", &EXAMPLE, &json!({"platform": "ex", "title": "t", "count": 300}));
        assert_eq!(wrong[0].field, "count");
        let unknown = problems("ex", &EXAMPLE, &json!({"platform": "ex", "title": "t", "colour": "red"}));
        assert!(unknown[0].message.contains("unknown field `colour`"), "{unknown:?}");
        assert_eq!((EXAMPLE.schema)().name, "Example");
    }

    #[test]
    fn an_adapter_reads_the_same_type_without_the_tag() {
        let options: Example = parse(&json!({"platform": "ex", "title": "t", "count": 3})).unwrap();
        assert_eq!((options.title.as_deref(), options.count), (Some("t"), 3));
        assert!(matches!(parse::<Example>(&json!({"count": "x"})), Err(PlatformError::Permanent(_))));
        assert_eq!(parse::<NoOptions>(&Value::Null).map(|_| ()), Ok(()));
    }
}
