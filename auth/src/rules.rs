//! The field rules of CONTRACT section 4, as pure functions. Lengths count characters, not bytes.
//! Stored text holds no control character: nobody types one, and a NUL is more than a store can
//! keep (PostgreSQL under FerretDB refuses it).

use common::FieldError;

const CONTROL: &str = "must not contain control characters";

pub fn name(value: &str) -> Option<FieldError> {
    if value.chars().any(char::is_control) {
        return Some(FieldError::new("name", CONTROL));
    }
    length("name", value.trim(), 1, 100)
}

pub fn login(value: &str) -> Option<FieldError> {
    if value.chars().any(char::is_whitespace) {
        return Some(FieldError::new("login", "must not contain spaces"));
    }
    if value.chars().any(char::is_control) {
        return Some(FieldError::new("login", CONTROL));
    }
    length("login", value, 5, 100)
}

pub fn password(path: &str, value: &str) -> Option<FieldError> {
    length(path, value, 8, 128)
}

/// Permissions to grant or revoke: trimmed, none empty, at least one.
pub fn permissions(values: &[String]) -> Result<Vec<String>, FieldError> {
    const MAX: usize = 20;
    const MAX_LEN: usize = 50;
    let trimmed: Vec<String> = values.iter().map(|value| value.trim().to_owned()).collect();
    if trimmed.is_empty() || trimmed.len() > MAX {
        return Err(FieldError::new(
            "permissions",
            format!("must hold 1 to {MAX} permissions"),
        ));
    }
    if trimmed
        .iter()
        .any(|value| value.is_empty() || value.chars().count() > MAX_LEN)
    {
        return Err(FieldError::new(
            "permissions",
            format!("each permission must be 1 to {MAX_LEN} characters"),
        ));
    }
    if trimmed
        .iter()
        .any(|value| value.chars().any(char::is_control))
    {
        return Err(FieldError::new("permissions", CONTROL));
    }
    Ok(trimmed)
}

fn length(path: &str, value: &str, min: usize, max: usize) -> Option<FieldError> {
    let count = value.chars().count();
    (count < min || count > max)
        .then(|| FieldError::new(path, format!("must be {min} to {max} characters")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_need_five_characters_and_no_spaces() {
        assert!(login("alice").is_none());
        assert_eq!(login("ali").unwrap().path, "login");
        assert!(login("al ice").is_some());
        assert!(login("alice\t").is_some());
        assert!(login(&"a".repeat(101)).is_some());
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(name("é").is_none());
        assert!(password("password", "éééééééé").is_none());
        assert!(password("newPassword", "short").unwrap().path == "newPassword");
    }

    #[test]
    fn blank_names_are_refused() {
        assert!(name("   ").is_some());
    }

    #[test]
    fn control_characters_are_refused_in_stored_text() {
        assert_eq!(name("Al\u{0}ice").unwrap().message, CONTROL);
        assert_eq!(login("alice\u{90}x").unwrap().message, CONTROL);
        assert!(permissions(&["edi\u{0}tor".into()]).is_err());
        assert!(
            password("password", "pass\u{0}word").is_none(),
            "hashed, never stored"
        );
    }

    #[test]
    fn permissions_are_trimmed_and_never_empty() {
        assert_eq!(permissions(&[" admin ".into()]).unwrap(), vec!["admin"]);
        assert!(permissions(&[" ".into()]).is_err());
        assert!(permissions(&[]).is_err());
    }
}
