//! `--set KEY=VALUE`: one setting of a board profile changed from the command line
//! (`--set finetune.trainer.lr=1e-3`), without writing a whole profile file. The value is read
//! as a TOML value (`1e-3`, `true`, `"cpu"`, `[1, 2]`); anything that is not one is a string.

use std::str::FromStr;

/// One `KEY=VALUE` override.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The dotted path of the setting: `finetune.trainer.lr`.
    pub path: Vec<String>,
    /// Its new value.
    pub value: toml::Value,
}

impl FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, raw) = s.split_once('=').ok_or_else(|| {
            format!("--set {s}: expected KEY=VALUE, e.g. finetune.duty_cycle=0.5")
        })?;
        let path: Vec<String> = key.trim().split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!(
                "--set {s}: `{key}` is not a dotted key like finetune.trainer.lr"
            ));
        }
        let raw = raw.trim();
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        Ok(Self { path, value })
    }
}

impl Override {
    /// Sets the value in `table`, creating the tables on its path. Unknown keys are caught
    /// later, when the profile is parsed (profiles deny unknown fields).
    ///
    /// # Errors
    /// When a prefix of the path names a value that is not a table.
    pub fn apply(&self, table: &mut toml::Table) -> Result<(), String> {
        let (last, parents) = self.path.split_last().ok_or("--set with an empty key")?;
        let mut t = table;
        for (i, key) in parents.iter().enumerate() {
            let entry = t
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = entry.as_table_mut().ok_or_else(|| {
                format!(
                    "--set {}: `{}` is a value, not a table",
                    self.path.join("."),
                    self.path[..=i].join(".")
                )
            })?;
        }
        t.insert(last.clone(), self.value.clone());
        Ok(())
    }
}

/// Parses profile `text` (named `origin` in errors), applies `overrides` in order, and returns
/// the table.
///
/// # Errors
/// Malformed TOML or an override that does not fit the profile's shape, named.
pub fn apply_all(text: &str, origin: &str, overrides: &[Override]) -> Result<String, String> {
    if overrides.is_empty() {
        return Ok(text.to_string());
    }
    let mut table: toml::Table = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    for o in overrides {
        o.apply(&mut table)?;
    }
    toml::to_string(&table).map_err(|e| format!("{origin} with --set: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_toml_and_bare_words_as_strings() {
        let o: Override = "finetune.trainer.lr=1e-3".parse().expect("parse");
        assert_eq!(o.path, ["finetune", "trainer", "lr"]);
        assert_eq!(o.value, toml::Value::Float(1e-3));
        let o: Override = "finetune.device = cpu".parse().expect("parse");
        assert_eq!(o.value, toml::Value::String("cpu".into()));
        let o: Override = "finetune.enabled=true".parse().expect("parse");
        assert_eq!(o.value, toml::Value::Boolean(true));
        assert!("finetune.lr".parse::<Override>().is_err());
        assert!("finetune..lr=1".parse::<Override>().is_err());
    }

    #[test]
    fn overrides_replace_create_and_refuse_to_descend_into_values() {
        let text = "[finetune]\nduty_cycle = 0.25\n";
        let set = |s: &str| s.parse::<Override>().expect("parse");
        let out = apply_all(
            text,
            "t",
            &[
                set("finetune.duty_cycle=1.0"),
                set("finetune.trainer.batch=16"),
            ],
        )
        .expect("apply");
        let table: toml::Table = toml::from_str(&out).expect("toml");
        assert_eq!(table["finetune"]["duty_cycle"].as_float(), Some(1.0));
        assert_eq!(table["finetune"]["trainer"]["batch"].as_integer(), Some(16));
        let err = apply_all(text, "t", &[set("finetune.duty_cycle.x=1")]).expect_err("a value");
        assert!(err.contains("finetune.duty_cycle` is a value"), "{err}");
    }
}
