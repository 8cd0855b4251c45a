//! Secrets the gateway mints itself (control tokens, the demo's keys). A leaf module: it imports
//! nothing of the crate.

/// 32 random bytes, hex, with a recognisable prefix (so leaked tokens are easy to grep for).
pub fn random_token() -> String {
    format!("pcx_{}", hex::encode(rand::random::<[u8; 32]>()))
}
