//! A caller's conversion jobs: list, status, download, cancel. A job exists only for its
//! owner and administrators; anyone else gets the same 404 as for an unknown id.

use spin_sdk::http::{IncomingResponse, Request, Response, ResponseOutparam};
use spinmesh_api::authn::{Claims, Role, now_unix};
use spinmesh_api::edge::Edge;
use spinmesh_api::{ApiError, Page, authenticate, json, paginated};
use spinmesh_media::job::{JobView, RunnerJob, is_job_id};

use crate::config::Config;
use crate::route::JobRoute;
use crate::runner::Runner;
use crate::{respond, stream};

enum Reply {
    Json(Response),
    Download(IncomingResponse),
}

pub async fn handle(
    edge: &Edge,
    head: &Request,
    route: JobRoute<'_>,
    response_out: ResponseOutparam,
) {
    match serve(head, route).await {
        Ok(Reply::Json(response)) => respond(edge, response_out, response).await,
        Ok(Reply::Download(response)) => {
            stream::forward_download(edge, response, response_out).await
        }
        Err(error) => respond(edge, response_out, error.into()).await,
    }
}

async fn serve(head: &Request, route: JobRoute<'_>) -> Result<Reply, ApiError> {
    let config = Config::load()?;
    let claims = authenticate(head, &config.verifier, now_unix())?;
    let runner = &config.runner;
    let reply = match route {
        JobRoute::List => {
            let page = Page::from_request(head)?;
            let owner = (!claims.has_role(Role::Admin)).then_some(claims.sub.as_str());
            let (jobs, total) = runner.jobs(owner, page).await?;
            let views: Vec<JobView> = jobs.into_iter().map(RunnerJob::view).collect();
            Reply::Json(paginated(head, page, total, &views))
        }
        JobRoute::Status(id) => {
            Reply::Json(json(200, &visible_job(runner, id, &claims).await?.view()))
        }
        JobRoute::Cancel(id) => {
            visible_job(runner, id, &claims).await?;
            Reply::Json(json(200, &runner.cancel(id).await?.view()))
        }
        JobRoute::Download(id) => {
            visible_job(runner, id, &claims).await?;
            let header = |name| head.header(name).and_then(|value| value.as_str());
            Reply::Download(
                runner
                    .output(id, header("range"), header("if-range"))
                    .await?,
            )
        }
    };
    Ok(reply)
}

async fn visible_job(runner: &Runner, id: &str, claims: &Claims) -> Result<RunnerJob, ApiError> {
    let not_found = || ApiError::not_found("Job not found");
    if !is_job_id(id) {
        return Err(not_found());
    }
    let job = runner.job(id).await?;
    if job.visible_to(&claims.sub, claims.has_role(Role::Admin)) {
        Ok(job)
    } else {
        Err(not_found())
    }
}
