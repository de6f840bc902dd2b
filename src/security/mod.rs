//! What keeps secrets secret: the master key and digests ([`secrets`]), the sealed credentials
//! ([`credentials`]), the admin users with argon2id passwords ([`users`]) and the CMO agent's API
//! keys ([`api_keys`]).

pub mod api_keys;
pub mod credentials;
pub mod secrets;
pub mod users;
