//! Keeping personal data out of logs and messages.

/// `***5678`: only the last four digits of a phone number, for logs and messages that must
/// not carry the whole number.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_last_four_digits() {
        assert_eq!(mask_phone("+821012345678"), "***5678");
        assert_eq!(mask_phone("+82 10-1234-5678"), "***5678");
        assert_eq!(mask_phone("+12"), "***12");
    }
}
