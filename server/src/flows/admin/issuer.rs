//! What the issuer's own systems ask: whether an authentication value is
//! genuine, before authorising the payment.

use super::{action, record};
use crate::app::App;
use crate::error::ApiError;
use crate::flows::authentication_value::{self, VerifyRequest, VerifyResponse};

/// Checks an authentication value; audited with the purchase and the
/// answer (never the card number or the value).
pub async fn check_authentication_value(
    app: &App,
    req: &VerifyRequest,
    actor: &str,
) -> Result<VerifyResponse, ApiError> {
    let answer = authentication_value::verify(app, req).await?;
    let mut audit = action(app, "authentication_value.checked", actor);
    audit.acs_trans_id = Some(req.acs_trans_id.clone());
    audit.outcome = if answer.valid { "valid" } else { "invalid" }.into();
    record(app, audit).await?;
    Ok(answer)
}
