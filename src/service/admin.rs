//! `kms.v1.AdminService`: principals, their tokens and their access keys. Every change is audited before it is
//! stored, as key changes are; a token or an access key's secret appears once, in CreateToken's or
//! CreateAccessKey's response, and never in a record or a log line.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::call::Auditor;
use super::convert;
use crate::auth::{Authenticator, Method, NewPrincipal};
use crate::proto as pb;
use crate::proto::admin_service_server::AdminService;
use crate::rpc::Rpc;

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

#[tonic::async_trait]
impl AdminService for AdminServiceImpl {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        self.auditor
            .serve(
                Rpc::WhoAmI,
                request,
                |_, _| {},
                async |_, admitted| {
                    let caller = admitted.caller();
                    let (method, credential) = match &caller.method() {
                        Method::Token(id) => ("token", id.clone()),
                        Method::Certificate(subject) => ("certificate", subject.clone()),
                        Method::AccessKey(id) => ("access_key", id.clone()),
                    };
                    Ok(pb::WhoAmIResponse {
                        principal: caller.principal().to_string(),
                        admin: caller.is_admin(),
                        create_keys: caller.can_create_keys(),
                        method: method.to_owned(),
                        credential,
                    })
                },
            )
            .await
    }

    async fn create_principal(
        &self,
        request: Request<pb::CreatePrincipalRequest>,
    ) -> Result<Response<pb::CreatePrincipalResponse>, Status> {
        self.auditor
            .serve(
                Rpc::CreatePrincipal,
                request,
                |req, call| {
                    call.param("name", &req.name);
                    call.param("admin", req.admin);
                    call.param("create_keys", req.create_keys);
                    if !req.certificate_subjects.is_empty() {
                        call.param("certificate_subjects", req.certificate_subjects.join(" "));
                    }
                },
                async |req, admitted| {
                    let new = NewPrincipal {
                        name: req.name,
                        description: req.description,
                        admin: req.admin,
                        create_keys: req.create_keys,
                        certificate_subjects: req.certificate_subjects,
                    };
                    let principal = self.auth.create_principal(new, admitted).await?;
                    Ok(pb::CreatePrincipalResponse {
                        principal: Some(convert::principal(&principal)),
                    })
                },
            )
            .await
    }

    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        self.auditor
            .serve(
                Rpc::ListPrincipals,
                request,
                |_, _| {},
                async |_, _admitted| {
                    Ok(pb::ListPrincipalsResponse {
                        principals: self
                            .auth
                            .principals()
                            .iter()
                            .map(convert::principal)
                            .collect(),
                    })
                },
            )
            .await
    }

    async fn disable_principal(
        &self,
        request: Request<pb::DisablePrincipalRequest>,
    ) -> Result<Response<pb::DisablePrincipalResponse>, Status> {
        self.auditor
            .serve(
                Rpc::DisablePrincipal,
                request,
                |req, call| call.param("name", &req.name),
                async |req, admitted| {
                    let principal = self.auth.disable_principal(&req.name, admitted).await?;
                    Ok(pb::DisablePrincipalResponse {
                        principal: Some(convert::principal(&principal)),
                    })
                },
            )
            .await
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        self.auditor
            .serve(
                Rpc::CreateToken,
                request,
                |req, call| {
                    call.param("principal", &req.principal);
                    if req.ttl_seconds > 0 {
                        call.param("ttl_seconds", req.ttl_seconds);
                    }
                },
                async |req, admitted| {
                    if req.ttl_seconds > MAX_TTL_SECONDS {
                        return Err(Status::from(crate::keys::InvalidInput(format!(
                            "ttl_seconds must be at most {MAX_TTL_SECONDS} (ten years); 0 means no expiry"
                        ))));
                    }
                    let ttl = (req.ttl_seconds > 0).then(|| Duration::from_secs(req.ttl_seconds));
                    let issued = self
                        .auth
                        .create_token(&req.principal, req.description, ttl, admitted)
                        .await?;
                    Ok(pb::CreateTokenResponse {
                        // The one place a token leaves the daemon: to the administrator who asked for it.
                        token: issued.token.to_string(),
                        info: Some(convert::token(&issued.info)),
                    })
                },
            )
            .await
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        self.auditor
            .serve(
                Rpc::ListTokens,
                request,
                |req, call| {
                    if !req.principal.is_empty() {
                        call.param("principal", &req.principal);
                    }
                },
                async |req, _admitted| {
                    let filter = (!req.principal.is_empty()).then_some(req.principal.as_str());
                    Ok(pb::ListTokensResponse {
                        tokens: self
                            .auth
                            .tokens(filter)
                            .iter()
                            .map(convert::token)
                            .collect(),
                    })
                },
            )
            .await
    }

    async fn revoke_token(
        &self,
        mut request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        // A whole token where its id belongs (`revoke "$(kmsctl tokens create svc)"`) means that token: revoke it
        // by its id, and let its secret go no further than this.
        let named = &mut request.get_mut().token_id;
        if let Some((id, _)) = crate::auth::token::parse(named) {
            *named = id.to_owned();
        }
        self.auditor
            .serve(
                Rpc::RevokeToken,
                request,
                |req, call| call.param("revoked_token_id", &req.token_id),
                async |req, admitted| {
                    let info = self.auth.revoke_token(&req.token_id, admitted).await?;
                    Ok(pb::RevokeTokenResponse {
                        info: Some(convert::token(&info)),
                    })
                },
            )
            .await
    }

    async fn create_access_key(
        &self,
        request: Request<pb::CreateAccessKeyRequest>,
    ) -> Result<Response<pb::CreateAccessKeyResponse>, Status> {
        self.auditor
            .serve(
                Rpc::CreateAccessKey,
                request,
                |req, call| call.param("principal", &req.principal),
                async |req, admitted| {
                    let issued = self
                        .auth
                        .create_access_key(&req.principal, req.description, admitted)
                        .await?;
                    Ok(pb::CreateAccessKeyResponse {
                        // The one place a secret access key leaves the daemon: to the administrator who asked.
                        secret_access_key: issued.secret.expose().to_owned(),
                        info: Some(convert::access_key(&issued.info)),
                    })
                },
            )
            .await
    }

    async fn list_access_keys(
        &self,
        request: Request<pb::ListAccessKeysRequest>,
    ) -> Result<Response<pb::ListAccessKeysResponse>, Status> {
        self.auditor
            .serve(
                Rpc::ListAccessKeys,
                request,
                |req, call| {
                    if !req.principal.is_empty() {
                        call.param("principal", &req.principal);
                    }
                },
                async |req, _admitted| {
                    let filter = (!req.principal.is_empty()).then_some(req.principal.as_str());
                    Ok(pb::ListAccessKeysResponse {
                        access_keys: self
                            .auth
                            .access_keys(filter)
                            .iter()
                            .map(convert::access_key)
                            .collect(),
                    })
                },
            )
            .await
    }

    async fn revoke_access_key(
        &self,
        request: Request<pb::RevokeAccessKeyRequest>,
    ) -> Result<Response<pb::RevokeAccessKeyResponse>, Status> {
        self.auditor
            .serve(
                Rpc::RevokeAccessKey,
                request,
                |req, call| call.param("revoked_access_key_id", &req.access_key_id),
                async |req, admitted| {
                    let info = self
                        .auth
                        .revoke_access_key(&req.access_key_id, admitted)
                        .await?;
                    Ok(pb::RevokeAccessKeyResponse {
                        info: Some(convert::access_key(&info)),
                    })
                },
            )
            .await
    }
}
