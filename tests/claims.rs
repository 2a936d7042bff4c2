//! The application's own claim types: login claims need no placeholders, the
//! layer fills in the registered claims.

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use tower_sliding_jwt::{Claims, ManualClock, RegisteredClaims, SlidingJwtLayer};

#[derive(Clone, Serialize, Deserialize)]
struct MyClaims {
    #[serde(flatten)]
    registered: RegisteredClaims,
    role: String,
}

impl Claims for MyClaims {
    fn registered(&self) -> &RegisteredClaims {
        &self.registered
    }
    fn registered_mut(&mut self) -> &mut RegisteredClaims {
        &mut self.registered
    }
}

#[tokio::test]
async fn custom_login_claims_need_no_placeholders() {
    let layer = SlidingJwtLayer::<_, MyClaims>::builder(hs256())
        .with_clock(ManualClock::new(T0))
        .with_issuer("me")
        .build()
        .unwrap();
    let login = MyClaims {
        registered: RegisteredClaims::new("alice"),
        role: "admin".into(),
    };
    let issued = layer.issuer().issue(login).unwrap();
    let claims = layer.issuer().verify(issued.token()).await.unwrap();
    assert_eq!(claims.registered.sub.as_deref(), Some("alice"));
    assert_eq!(claims.registered.exp, T0 + 3600);
    assert_eq!(claims.registered.auth_time, Some(T0));
    assert_eq!(claims.registered.iss.as_deref(), Some("me"));
    assert_eq!(claims.role, "admin");
}
