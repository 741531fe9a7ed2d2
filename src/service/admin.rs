//! `kms.v1.AdminService`: principals and their tokens. Every change is audited before it is stored, as key
//! changes are; a token appears once, in CreateToken's response, and never in a record or a log line.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::call::{AuditGate, Auditor};
use super::convert;
use crate::auth::{AccessError, Authenticator, Method, NewPrincipal};
use crate::proto::admin_service_server::AdminService;
use crate::proto::*;

/// The longest a token may be issued for: ten years.
const MAX_TTL_SECONDS: u64 = 10 * 366 * 24 * 3600;

pub struct AdminServiceImpl {
    auth: Arc<Authenticator>,
    auditor: Arc<Auditor>,
}

impl AdminServiceImpl {
    pub fn new(auth: Arc<Authenticator>, auditor: Arc<Auditor>) -> Self {
        AdminServiceImpl { auth, auditor }
    }
}

/// Makes the call's success record durable (with `parameters` added) before its change is stored.
async fn approve(gate: &AuditGate<'_>, parameters: &[(&str, &str)]) -> Result<(), AccessError> {
    gate.record_success(None, None, parameters)
        .await
        .map_err(|_| AccessError::AuditUnavailable)
}

#[tonic::async_trait]
impl AdminService for AdminServiceImpl {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let call = self.auditor.begin("WhoAmI", &request);
        let result = async {
            let caller = call.admit()?;
            let (method, credential) = match &caller.method {
                Method::Token(id) => ("token", id.clone()),
                Method::Certificate(subject) => ("certificate", subject.clone()),
            };
            Ok(WhoAmIResponse {
                principal: caller.principal.to_string(),
                admin: caller.admin,
                create_keys: caller.create_keys,
                method: method.to_owned(),
                credential,
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn create_principal(
        &self,
        request: Request<CreatePrincipalRequest>,
    ) -> Result<Response<CreatePrincipalResponse>, Status> {
        let mut call = self.auditor.begin("CreatePrincipal", &request);
        let req = request.into_inner();
        call.param("name", &req.name);
        call.param("admin", req.admin);
        call.param("create_keys", req.create_keys);
        if !req.certificate_subjects.is_empty() {
            call.param("certificate_subjects", req.certificate_subjects.join(" "));
        }
        let gate = self.auditor.gate(&call);
        let result = async {
            call.admit_admin()?;
            let new = NewPrincipal {
                name: req.name,
                description: req.description,
                admin: req.admin,
                create_keys: req.create_keys,
                certificate_subjects: req.certificate_subjects,
            };
            let principal = self.auth.create_principal(new, approve(&gate, &[])).await?;
            Ok(CreatePrincipalResponse {
                principal: Some(convert::principal(&principal)),
            })
        }
        .await;
        let recorded = gate.recorded();
        self.auditor.finish_gated(call, recorded, result).await
    }

    async fn list_principals(
        &self,
        request: Request<ListPrincipalsRequest>,
    ) -> Result<Response<ListPrincipalsResponse>, Status> {
        let call = self.auditor.begin("ListPrincipals", &request);
        let result = async {
            call.admit_admin()?;
            Ok(ListPrincipalsResponse {
                principals: self
                    .auth
                    .principals()
                    .iter()
                    .map(convert::principal)
                    .collect(),
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn disable_principal(
        &self,
        request: Request<DisablePrincipalRequest>,
    ) -> Result<Response<DisablePrincipalResponse>, Status> {
        let mut call = self.auditor.begin("DisablePrincipal", &request);
        let req = request.into_inner();
        call.param("name", &req.name);
        let gate = self.auditor.gate(&call);
        let result = async {
            call.admit_admin()?;
            let principal = self
                .auth
                .disable_principal(&req.name, approve(&gate, &[]))
                .await?;
            Ok(DisablePrincipalResponse {
                principal: Some(convert::principal(&principal)),
            })
        }
        .await;
        let recorded = gate.recorded();
        self.auditor.finish_gated(call, recorded, result).await
    }

    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let mut call = self.auditor.begin("CreateToken", &request);
        let req = request.into_inner();
        call.param("principal", &req.principal);
        if req.ttl_seconds > 0 {
            call.param("ttl_seconds", req.ttl_seconds);
        }
        let gate = self.auditor.gate(&call);
        let gate_ref = &gate;
        let result = async {
            call.admit_admin()?;
            if req.ttl_seconds > MAX_TTL_SECONDS {
                return Err(Status::from(crate::keys::InvalidInput(format!(
                    "ttl_seconds must be at most {MAX_TTL_SECONDS} (ten years); 0 means no expiry"
                ))));
            }
            let ttl = (req.ttl_seconds > 0).then(|| Duration::from_secs(req.ttl_seconds));
            let issued = self
                .auth
                .create_token(&req.principal, req.description, ttl, |id| async move {
                    approve(gate_ref, &[("issued_token_id", &id)]).await
                })
                .await?;
            Ok(CreateTokenResponse {
                // The one place a token leaves the daemon: to the administrator who asked for it.
                token: issued.token.to_string(),
                info: Some(convert::token(&issued.info)),
            })
        }
        .await;
        let recorded = gate.recorded();
        self.auditor.finish_gated(call, recorded, result).await
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let mut call = self.auditor.begin("ListTokens", &request);
        let req = request.into_inner();
        if !req.principal.is_empty() {
            call.param("principal", &req.principal);
        }
        let result = async {
            call.admit_admin()?;
            let filter = (!req.principal.is_empty()).then_some(req.principal.as_str());
            Ok(ListTokensResponse {
                tokens: self
                    .auth
                    .tokens(filter)
                    .iter()
                    .map(convert::token)
                    .collect(),
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let mut call = self.auditor.begin("RevokeToken", &request);
        let mut req = request.into_inner();
        // A whole token where its id belongs (`revoke "$(kmsctl tokens create svc)"`) means that token: revoke it
        // by its id, and let its secret go no further than this.
        if let Some((id, _)) = crate::auth::token::parse(&req.token_id) {
            req.token_id = id.to_owned();
        }
        call.param("revoked_token_id", &req.token_id);
        let gate = self.auditor.gate(&call);
        let result = async {
            call.admit_admin()?;
            let info = self
                .auth
                .revoke_token(&req.token_id, approve(&gate, &[]))
                .await?;
            Ok(RevokeTokenResponse {
                info: Some(convert::token(&info)),
            })
        }
        .await;
        let recorded = gate.recorded();
        self.auditor.finish_gated(call, recorded, result).await
    }
}
