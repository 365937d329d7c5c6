//! The operations: each takes a warm instance, calls the plugin, and checks its answer
//! before it reaches the caller.

use request_access_guest::api;

use super::{CallError, Refusal, Runtime};
use crate::validate_answer;

impl Runtime {
    /// Reserve an access number (the seed's Create).
    pub async fn create(&self, request: &api::CreateRequest) -> Result<api::AccessInfo, CallError> {
        self.create_placed(request)
            .await
            .map(|placed| placed.access)
            .map_err(|refusal| refusal.error)
    }

    /// [`Runtime::create`], answering the group that lent the number (the requested one,
    /// or its fallback group) and, for an exhausted pool, when to retry. A plugin that
    /// does not export `placement` (built against 0.1.0) lends from the requested group
    /// and says nothing of when to retry.
    pub async fn create_placed(
        &self,
        request: &api::CreateRequest,
    ) -> Result<api::Placed, Refusal> {
        let services = self.services.load_full();
        let _admitted = self.gate(&services, Some(&request.resource_group)).await?;
        let wit_request = request.clone().into();
        let before = services.clock.now_ms();
        let (generation, mut warm) = self.check_out(&services).await?;
        let outcome = match &warm.plugin.placement {
            Some(placement) => placement
                .call_place(&mut warm.store, &wit_request)
                .await
                .map(|answer| answer.map(api::Placed::from).map_err(api::Refused::from)),
            None => warm
                .plugin
                .request_access
                .call_create(&mut warm.store, &wit_request)
                .await
                .map(|answer| {
                    answer
                        .map(|info| api::Placed {
                            access: info.into(),
                            resource_group: request.resource_group.clone(),
                        })
                        .map_err(|e| api::Error::from(e).into())
                }),
        };
        let retry_at = match &outcome {
            Ok(Err(refused)) => refused.retry_at,
            _ => None,
        };
        let outcome = outcome.map(|answer| answer.map_err(|refused| refused.error));
        let placed = self
            .check_in(generation, warm, outcome)
            .map_err(|error| Refusal {
                retry_at: retry_at
                    .filter(|_| {
                        matches!(
                            error,
                            CallError::Service(api::Error::NoAccessNumberAvailable(_))
                        )
                    })
                    .and_then(|at| {
                        validate_answer::retry_at(&services, &request.resource_group, at, before)
                    }),
                error,
            })?;
        let after = services.clock.now_ms();
        validate_answer::placed(&services, request, &placed, before..=after)
            .map_err(|why| self.fault(why))?;
        Ok(placed)
    }

    /// Match an incoming call to its reservation, releasing it.
    pub async fn match_access(
        &self,
        request: &api::MatchRequest,
    ) -> Result<api::Matched, CallError> {
        let services = self.services.load_full();
        let group = Self::group_of(&services, &request.access_number);
        let _admitted = self.gate(&services, group).await?;
        let wit_request = request.clone().into();
        let (generation, mut warm) = self.check_out(&services).await?;
        let outcome = warm
            .plugin
            .request_access
            .call_match_access(&mut warm.store, &wit_request)
            .await;
        let matched: api::Matched = self.check_in(generation, warm, outcome)?.into();
        validate_answer::matched(&matched).map_err(|why| self.fault(why))?;
        Ok(matched)
    }

    /// Give a service's reservation back; answers the number released.
    pub async fn release(
        &self,
        service_id: &str,
        resource_group: &str,
    ) -> Result<String, CallError> {
        let services = self.services.load_full();
        let _admitted = self.gate(&services, Some(resource_group)).await?;
        let (generation, mut warm) = self.check_out(&services).await?;
        let outcome = warm
            .plugin
            .request_access
            .call_release(&mut warm.store, service_id, resource_group)
            .await;
        let number = self.check_in(generation, warm, outcome)?;
        validate_answer::released(&number).map_err(|why| self.fault(why))?;
        Ok(number)
    }

    /// Extend a service's live reservation without changing its number. A plugin that
    /// does not export `lease` (built against 0.1.0) cannot: [`CallError::Unsupported`].
    pub async fn extend(&self, request: &api::ExtendRequest) -> Result<api::Extended, CallError> {
        let services = self.services.load_full();
        let _admitted = self.gate(&services, Some(&request.resource_group)).await?;
        let wit_request = request.clone().into();
        let before = services.clock.now_ms();
        let (generation, mut warm) = self.check_out(&services).await?;
        let Some(lease) = &warm.plugin.lease else {
            self.check_in(generation, warm, Ok(Ok::<(), api::Error>(())))?;
            return Err(CallError::Unsupported(
                "extend: the plugin does not export `lease` (it was built against the 0.1.0 \
                 contract)"
                    .into(),
            ));
        };
        let outcome = lease
            .call_extend(&mut warm.store, &wit_request)
            .await
            .map(|answer| answer.map(api::Extended::from).map_err(api::Error::from));
        let extended = self.check_in(generation, warm, outcome)?;
        let after = services.clock.now_ms();
        validate_answer::extended(&extended, before..=after).map_err(|why| self.fault(why))?;
        Ok(extended)
    }

    /// The occupancy of a group.
    pub async fn pool_status(&self, resource_group: &str) -> Result<api::PoolStatus, CallError> {
        let services = self.services.load_full();
        let (generation, mut warm) = self.check_out(&services).await?;
        let outcome = warm
            .plugin
            .request_access
            .call_pool_status(&mut warm.store, resource_group)
            .await;
        let status: api::PoolStatus = self.check_in(generation, warm, outcome)?.into();
        validate_answer::pool_status(&services, resource_group, &status)
            .map_err(|why| self.fault(why))?;
        Ok(status)
    }
}
