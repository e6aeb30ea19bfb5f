//! A caller's conversion jobs: list, status (at once or on its next change), download,
//! cancel, retry and live events. A job exists only for its owner and administrators;
//! anyone else gets the same 404 as for an unknown id.

use spin_sdk::http::{IncomingResponse, Request, Response, ResponseOutparam};
use spinmesh_api::authn::{Role, now_unix};
use spinmesh_api::edge::Edge;
use spinmesh_api::{ApiError, Page, authenticate, json, paginated};
use spinmesh_media::job::JobView;
use spinmesh_upload::follow;
use spinmesh_upload::route::JobRoute;

use crate::config::Config;
use crate::{respond, stream};

enum Reply {
    Json(Response),
    /// The runner's answer, streamed through as `Passing` says.
    Stream(IncomingResponse, &'static stream::Passing),
}

pub async fn handle(
    edge: &Edge,
    head: &Request,
    route: JobRoute<'_>,
    response_out: ResponseOutparam,
) {
    match serve(head, route).await {
        Ok(Reply::Json(response)) => respond(edge, response_out, response).await,
        Ok(Reply::Stream(response, passing)) => {
            stream::forward(edge, response, response_out, passing).await
        }
        Err(error) => respond(edge, response_out, error.into()).await,
    }
}

async fn serve(head: &Request, route: JobRoute<'_>) -> Result<Reply, ApiError> {
    let config = Config::load()?;
    let claims = authenticate(head, &config.verifier, now_unix())?;
    let runner = &config.runner;
    let is_admin = claims.has_role(Role::Admin);
    let reply = match route {
        JobRoute::List => {
            let page = Page::from_request(head)?;
            let owner = (!is_admin).then_some(claims.sub.as_str());
            let (jobs, total) = runner.jobs(owner, page).await?;
            let views: Vec<JobView> = jobs.into_iter().map(JobView::from).collect();
            Reply::Json(paginated(head, page, total, &views))
        }
        JobRoute::Status(id) => {
            let wait = follow::wait_secs(head.query())?;
            let mut job = runner.visible_job(id, &claims.sub, is_admin).await?;
            if let Some(secs) = wait {
                job = runner.job_when_changed(id, secs).await?;
            }
            Reply::Json(json(200, &JobView::from(job)))
        }
        JobRoute::Cancel(id) => {
            runner.visible_job(id, &claims.sub, is_admin).await?;
            Reply::Json(json(200, &JobView::from(runner.cancel(id).await?)))
        }
        JobRoute::Download(id) => {
            runner.visible_job(id, &claims.sub, is_admin).await?;
            let header = |name| head.header(name).and_then(|value| value.as_str());
            Reply::Stream(
                runner
                    .output(id, header("range"), header("if-range"))
                    .await?,
                &stream::DOWNLOAD,
            )
        }
        JobRoute::Retry(id) => {
            runner.visible_job(id, &claims.sub, is_admin).await?;
            Reply::Json(json(202, &JobView::from(runner.retry(id).await?)))
        }
        JobRoute::Events(id) => {
            let last_seen = head
                .header("last-event-id")
                .and_then(|value| value.as_str());
            let last_seen = follow::last_event_id(last_seen)?;
            runner.visible_job(id, &claims.sub, is_admin).await?;
            Reply::Stream(runner.events(id, last_seen).await?, &stream::EVENTS)
        }
    };
    Ok(reply)
}
