//! The canary of the open-relay probe (R18): an address at a domain the gateway itself receives
//! for, `relay-canary-<32 hex digits>@<domain>`, one unguessable token per probe. The prober
//! asks a customer's server to relay a message to it; the gateway that receives it records the
//! token — proof that the server relays mail from outside addresses to outside addresses.

/// The local part's prefix.
pub const PREFIX: &str = "relay-canary-";

/// A new token: 128 random bits, as 32 lowercase hexadecimal digits.
pub fn token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The canary address of `token` at `domain`.
pub fn address(token: &str, domain: &str) -> String {
    format!("{PREFIX}{token}@{domain}")
}

/// The token of a canary local part (`relay-canary-` and 32 hexadecimal digits, any case), if
/// it is one.
pub fn token_of(local_part: &str) -> Option<String> {
    let rest = local_part
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &local_part[PREFIX.len()..])?;
    (rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit())).then(|| rest.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_through_its_address_and_nothing_else_is_one() {
        let t = token();
        assert_eq!(t.len(), 32);
        assert_ne!(t, token());
        let a = address(&t, "mx.example.net");
        let local = a.split('@').next().unwrap();
        assert_eq!(token_of(local).as_deref(), Some(t.as_str()));
        assert_eq!(token_of(&local.to_ascii_uppercase()).as_deref(), Some(t.as_str()));
        for not in ["relay-canary-", "relay-canary-abc", &format!("{local}0"), &format!("x{local}"), "postmaster"] {
            assert_eq!(token_of(not), None, "{not}");
        }
        assert_eq!(token_of(&format!("{PREFIX}{}", "g".repeat(32))), None);
    }
}
