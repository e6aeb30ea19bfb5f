//! The manifest's naming rule for variables and its `{{ name }}` templates,
//! shared by the manifest, the variables providers and `allowed_outbound_hosts`.

use std::collections::HashMap;

use anyhow::{Result, bail};

/// Names in the manifest (`[variables]` and component `variables` keys), as
/// Spin requires: lowercase words joined by single `_`, each word starting with
/// a letter (`api_key`, not `key_1`), so they map one-to-one onto
/// `SPIN_VARIABLE_<NAME>`.
pub fn validate_variable_name(name: &str) -> Result<()> {
    let valid = name.split('_').all(|word| {
        word.starts_with(|c: char| c.is_ascii_lowercase())
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if !valid {
        bail!(
            "invalid variable name {name:?}: use lowercase words joined by single underscores, each starting with a letter"
        );
    }
    Ok(())
}

/// One piece of a `"text {{ name }} text"` template.
#[derive(Debug, PartialEq)]
enum Part<'a> {
    Literal(&'a str),
    Reference(&'a str),
}

fn parse_template(template: &str) -> Result<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Literal(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unterminated `{{{{` in {template:?}");
        };
        let name = after[..end].trim();
        validate_variable_name(name)?;
        parts.push(Part::Reference(name));
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        bail!("unmatched `}}}}` in {template:?}");
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest));
    }
    Ok(parts)
}

/// The application variables a template refers to.
pub fn template_references(template: &str) -> Result<Vec<String>> {
    Ok(parse_template(template)?
        .into_iter()
        .filter_map(|part| match part {
            Part::Reference(name) => Some(name.to_string()),
            Part::Literal(_) => None,
        })
        .collect())
}

/// Expands a template with already-resolved application variables.
pub fn expand_template(template: &str, values: &HashMap<String, String>) -> Result<String> {
    let mut out = String::new();
    for part in parse_template(template)? {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Reference(name) => match values.get(name) {
                Some(value) => out.push_str(value),
                None => bail!("variable `{name}` has no value"),
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        for good in ["a", "api_key", "k8s_token2"] {
            validate_variable_name(good).unwrap();
        }
        for bad in ["", "A", "1a", "_a", "a_", "a__b", "a-b", "a.b", "key_1"] {
            assert!(validate_variable_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_templates() {
        assert_eq!(template_references("x{{ a }}y{{b}}").unwrap(), ["a", "b"]);
        assert!(template_references("{{ a").is_err());
        assert!(template_references("a }}").is_err());
        assert!(template_references("{{ Bad }}").is_err());
    }
}
