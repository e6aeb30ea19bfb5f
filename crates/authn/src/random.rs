use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::Error;

/// Fills a fixed-size array from the OS (WASI `random` in a component).
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| Error::Random)?;
    Ok(bytes)
}

/// 128 random bits as unpadded base64url: unguessable ids (jti, refresh families).
pub(crate) fn random_id() -> Result<String, Error> {
    Ok(URL_SAFE_NO_PAD.encode(random_array::<16>()?))
}
