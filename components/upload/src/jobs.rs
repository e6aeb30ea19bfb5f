//! A caller's conversion jobs: list, status, download, cancel. A job exists only for its
//! owner and administrators; anyone else gets the same 404 as for an unknown id.

use spin_sdk::http::{IncomingResponse, Request, Response, ResponseOutparam};
use spinmesh_api::authn::{Role, now_unix};
use spinmesh_api::edge::Edge;
use spinmesh_api::{ApiError, Page, authenticate, json, paginated};
use spinmesh_media::job::JobView;
use spinmesh_upload::route::JobRoute;

use crate::config::Config;
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
            let job = runner.visible_job(id, &claims.sub, is_admin).await?;
            Reply::Json(json(200, &JobView::from(job)))
        }
        JobRoute::Cancel(id) => {
            runner.visible_job(id, &claims.sub, is_admin).await?;
            Reply::Json(json(200, &JobView::from(runner.cancel(id).await?)))
        }
        JobRoute::Download(id) => {
            runner.visible_job(id, &claims.sub, is_admin).await?;
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
