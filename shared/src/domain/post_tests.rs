//! Given these events, when this command, then these events (or this rejection).

use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::domain::aggregate::DomainEvent;

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0).single().unwrap()
}

const PROJECT: Uuid = Uuid::from_u128(1);
const ACCOUNT_A: Uuid = Uuid::from_u128(10);
const ACCOUNT_B: Uuid = Uuid::from_u128(11);
const DELIVERY_A: Uuid = Uuid::from_u128(20);
const DELIVERY_B: Uuid = Uuid::from_u128(21);

fn target(delivery_id: Uuid, account_id: Uuid) -> Target {
    Target {
        delivery_id,
        account_id,
        content: None,
        options: Value::Null,
        media: None,
        thread: None,
        first_comment: None,
    }
}

fn targets() -> Vec<Target> {
    vec![target(DELIVERY_A, ACCOUNT_A), target(DELIVERY_B, ACCOUNT_B)]
}

fn created(status: PostStatus) -> Event {
    Event::Created {
        project_id: PROJECT,
        content: "hello".into(),
        media: Vec::new(),
        thread: Vec::new(),
        first_comment: None,
        targets: targets(),
        scheduled_at: Some(at(60)),
        status,
        requires_approval: status == PostStatus::PendingApproval,
        external_id: None,
    }
}

fn error(code: &str) -> DeliveryError {
    DeliveryError { code: code.into(), message: format!("{code} happened"), platform_request_id: Some("req-1".into()) }
}

fn given(events: &[Event]) -> Post {
    Post::replay(events)
}

fn queued(delivery_id: Uuid) -> Event {
    Event::DeliveryQueued { delivery_id, generation: 1 }
}

fn publishing(delivery_id: Uuid) -> Event {
    Event::DeliveryPublishing { delivery_id, attempt: 1 }
}

fn published_at(delivery_id: Uuid, post_status: PostStatus) -> Event {
    Event::DeliveryPublished {
        delivery_id,
        platform_post_id: "p1".into(),
        platform_url: Some("https://example/p1".into()),
        published_at: at(61),
        post_status,
    }
}

fn create(draft: bool, requires_approval: bool, scheduled_at: Option<DateTime<Utc>>) -> Command {
    Command::Create {
        project_id: PROJECT,
        content: "hello".into(),
        media: Vec::new(),
        thread: Vec::new(),
        first_comment: None,
        targets: targets(),
        scheduled_at,
        draft,
        requires_approval,
        external_id: None,
        now: at(0),
    }
}

#[test]
fn creating_schedules_for_now_when_no_time_is_given() {
    let events = given(&[]).decide(create(false, false, None)).unwrap();
    let Event::Created { scheduled_at, status, .. } = &events[0] else { panic!("{events:?}") };
    assert_eq!((*scheduled_at, *status), (Some(at(0)), PostStatus::Scheduled));
}

#[test]
fn creating_a_draft_or_one_that_needs_approval() {
    let draft = given(&[]).decide(create(true, false, None)).unwrap();
    assert!(matches!(draft[0], Event::Created { status: PostStatus::Draft, scheduled_at: None, .. }));
    let approval = given(&[]).decide(create(false, true, Some(at(60)))).unwrap();
    assert!(matches!(approval[0], Event::Created { status: PostStatus::PendingApproval, .. }));
}

#[test]
fn creating_twice_or_without_targets_or_with_a_repeated_account_is_refused() {
    assert_eq!(
        given(&[created(PostStatus::Scheduled)]).decide(create(false, false, None)),
        Err(Rejection::AlreadyExists)
    );
    let no_targets = Command::Create {
        project_id: PROJECT,
        content: "x".into(),
        media: Vec::new(),
        thread: Vec::new(),
        first_comment: None,
        targets: vec![],
        scheduled_at: None,
        draft: false,
        requires_approval: false,
        external_id: None,
        now: at(0),
    };
    assert_eq!(given(&[]).decide(no_targets), Err(Rejection::NoTargets));
    let repeated = Command::Create {
        project_id: PROJECT,
        content: "x".into(),
        media: Vec::new(),
        thread: Vec::new(),
        first_comment: None,
        targets: vec![target(DELIVERY_A, ACCOUNT_A), target(DELIVERY_B, ACCOUNT_A)],
        scheduled_at: None,
        draft: false,
        requires_approval: false,
        external_id: None,
        now: at(0),
    };
    assert_eq!(given(&[]).decide(repeated), Err(Rejection::DuplicateTarget(ACCOUNT_A)));
}

#[test]
fn commands_on_a_missing_post_are_refused() {
    assert_eq!(given(&[]).decide(Command::Approve), Err(Rejection::NotFound));
    assert_eq!(given(&[]).decide(Command::Cancel), Err(Rejection::NotFound));
}

#[test]
fn editing_before_any_delivery_started_resets_the_deliveries_to_a_new_generation() {
    let post = given(&[created(PostStatus::Scheduled), queued(DELIVERY_A)]);
    let events = post
        .decide(Command::Update {
            content: Some("edited".into()),
            media: None,
            thread: None,
            first_comment: None,
            targets: None,
            scheduled_at: Some(at(120)),
        })
        .unwrap();
    let post = events.iter().fold(post, Post::evolve);
    assert_eq!(post.content, "edited");
    assert_eq!(post.scheduled_at, Some(at(120)));
    assert_eq!(post.generation, 2);
    assert!(
        post.deliveries.iter().all(|delivery| delivery.status == DeliveryStatus::Pending && delivery.generation == 2)
    );
    // The job queued for generation 1 can no longer move its delivery.
    let stale = post.decide(Command::StartPublishing { delivery_id: DELIVERY_A, generation: 1 });
    assert!(matches!(stale, Err(Rejection::DeliveryMoved { .. })));
}

#[test]
fn media_on_the_post_and_a_target_survive_edits_that_do_not_replace_them() {
    let image = MediaRef { id: Uuid::from_u128(7), alt_text: Some("a cat".into()) };
    let mut own = target(DELIVERY_A, ACCOUNT_A);
    own.media = Some(vec![]);
    let created = Command::Create {
        project_id: PROJECT,
        content: "hello".into(),
        media: vec![image.clone()],
        thread: Vec::new(),
        first_comment: None,
        targets: vec![own, target(DELIVERY_B, ACCOUNT_B)],
        scheduled_at: None,
        draft: true,
        requires_approval: false,
        external_id: None,
        now: at(0),
    };
    let post = given(&[]);
    let post = post.decide(created).unwrap().iter().fold(post, Post::evolve);
    assert_eq!(post.media, std::slice::from_ref(&image));
    assert_eq!(post.deliveries[0].media, Some(vec![]), "the first target publishes none");
    assert_eq!(post.deliveries[1].media, None, "the second the post's");
    let edit = Command::Update {
        content: Some("edited".into()),
        media: None,
        thread: None,
        first_comment: None,
        targets: None,
        scheduled_at: None,
    };
    let edited = post.decide(edit).unwrap().iter().fold(post.clone(), Post::evolve);
    assert_eq!((edited.media.as_slice(), &edited.deliveries[0].media), (&[image][..], &Some(vec![])));
    let cleared = Command::Update {
        content: None,
        media: Some(vec![]),
        thread: None,
        first_comment: None,
        targets: None,
        scheduled_at: None,
    };
    let cleared = post.decide(cleared).unwrap().iter().fold(post, Post::evolve);
    assert!(cleared.media.is_empty());
    // An event recorded before posts carried media reads as a post without any.
    let old = json!({"type": "post.created", "project_id": PROJECT, "content": "x", "targets": [],
        "scheduled_at": null, "status": "draft", "requires_approval": false});
    let Event::Created { media, .. } = serde_json::from_value(old).unwrap() else { panic!("not a creation") };
    assert!(media.is_empty());
}

#[test]
fn editing_a_delivery_that_started_is_refused() {
    let post = given(&[created(PostStatus::Scheduled), queued(DELIVERY_A), publishing(DELIVERY_A)]);
    let update = Command::Update {
        content: Some("late".into()),
        media: None,
        thread: None,
        first_comment: None,
        targets: None,
        scheduled_at: None,
    };
    assert_eq!(post.decide(update), Err(Rejection::DeliveryStarted));
}

#[test]
fn approving_moves_pending_approval_to_scheduled() {
    let post = given(&[created(PostStatus::PendingApproval)]);
    assert_eq!(post.decide(Command::Approve), Ok(vec![Event::Approved { status: PostStatus::Scheduled }]));
}

#[test]
fn approving_a_post_that_needs_no_approval_is_refused() {
    assert_eq!(given(&[created(PostStatus::Scheduled)]).decide(Command::Approve), Err(Rejection::NotPendingApproval));
    let approved = given(&[created(PostStatus::PendingApproval), Event::Approved { status: PostStatus::Scheduled }]);
    assert_eq!(approved.decide(Command::Approve), Err(Rejection::NotPendingApproval));
}

#[test]
fn publishing_a_draft_schedules_it_now_or_sends_it_for_approval() {
    let draft = given(&[created(PostStatus::Draft)]);
    assert_eq!(
        draft.decide(Command::Publish { now: at(5) }),
        Ok(vec![Event::PublishRequested { scheduled_at: at(5), status: PostStatus::Scheduled }])
    );
    let mut needs_approval = created(PostStatus::Draft);
    if let Event::Created { requires_approval, .. } = &mut needs_approval {
        *requires_approval = true;
    }
    let events = given(&[needs_approval]).decide(Command::Publish { now: at(5) }).unwrap();
    assert!(matches!(events[0], Event::PublishRequested { status: PostStatus::PendingApproval, .. }));
    assert_eq!(
        given(&[created(PostStatus::Scheduled)]).decide(Command::Publish { now: at(5) }),
        Err(Rejection::NotADraft)
    );
}

#[test]
fn canceling_reaches_only_deliveries_that_have_not_started() {
    let post = given(&[created(PostStatus::Scheduled), queued(DELIVERY_A), publishing(DELIVERY_A)]);
    let events = post.decide(Command::Cancel).unwrap();
    assert_eq!(events, vec![Event::Canceled { delivery_ids: vec![DELIVERY_B], status: PostStatus::Publishing }]);
    let everything = given(&[created(PostStatus::Scheduled)]).decide(Command::Cancel).unwrap();
    assert_eq!(
        everything,
        vec![Event::Canceled { delivery_ids: vec![DELIVERY_A, DELIVERY_B], status: PostStatus::Canceled }]
    );
}

#[test]
fn canceling_a_published_post_is_refused() {
    let post = given(&[
        created(PostStatus::Scheduled),
        queued(DELIVERY_A),
        publishing(DELIVERY_A),
        published_at(DELIVERY_A, PostStatus::Publishing),
        queued(DELIVERY_B),
        publishing(DELIVERY_B),
        published_at(DELIVERY_B, PostStatus::Published),
    ]);
    assert_eq!(post.status, PostStatus::Published);
    assert_eq!(post.decide(Command::Cancel), Err(Rejection::Finished(PostStatus::Published)));
    let edit = Command::Update {
        content: Some("x".into()),
        media: None,
        thread: None,
        first_comment: None,
        targets: None,
        scheduled_at: None,
    };
    assert_eq!(post.decide(edit), Err(Rejection::Finished(PostStatus::Published)));
}

#[test]
fn a_delivery_goes_pending_queued_publishing_published() {
    let post = given(&[created(PostStatus::Scheduled)]);
    let queue = post.decide(Command::Queue { delivery_id: DELIVERY_A, generation: 1 }).unwrap();
    assert_eq!(queue, vec![queued(DELIVERY_A)]);
    let post = queue.iter().fold(post, Post::evolve);
    let start = post.decide(Command::StartPublishing { delivery_id: DELIVERY_A, generation: 1 }).unwrap();
    assert_eq!(start, vec![publishing(DELIVERY_A)]);
    let post = start.iter().fold(post, Post::evolve);
    assert_eq!(post.status, PostStatus::Publishing);
    let done = post
        .decide(Command::RecordPublished {
            delivery_id: DELIVERY_A,
            platform_post_id: "p1".into(),
            platform_url: Some("https://example/p1".into()),
            at: at(61),
        })
        .unwrap();
    assert_eq!(done, vec![published_at(DELIVERY_A, PostStatus::Publishing)]);
}

#[test]
fn a_delivery_is_queued_once_and_starts_publishing_once() {
    let post = given(&[created(PostStatus::Scheduled), queued(DELIVERY_A)]);
    assert!(matches!(
        post.decide(Command::Queue { delivery_id: DELIVERY_A, generation: 1 }),
        Err(Rejection::DeliveryMoved { status: DeliveryStatus::Queued, .. })
    ));
    let post = post.evolve(&publishing(DELIVERY_A));
    assert!(matches!(
        post.decide(Command::StartPublishing { delivery_id: DELIVERY_A, generation: 1 }),
        Err(Rejection::DeliveryMoved { status: DeliveryStatus::Publishing, .. })
    ));
}

#[test]
fn a_post_awaiting_approval_is_not_queued() {
    let post = given(&[created(PostStatus::PendingApproval)]);
    assert!(matches!(
        post.decide(Command::Queue { delivery_id: DELIVERY_A, generation: 1 }),
        Err(Rejection::DeliveryMoved { .. })
    ));
}

#[test]
fn a_retrying_delivery_goes_back_to_queued_and_counts_attempts() {
    let post = given(&[created(PostStatus::Scheduled), queued(DELIVERY_A), publishing(DELIVERY_A)]);
    let retry = post
        .decide(Command::RecordRetrying { delivery_id: DELIVERY_A, error: error("http_503"), retry_at: at(90) })
        .unwrap();
    let post = retry.iter().fold(post, Post::evolve);
    assert_eq!(post.deliveries[0].status, DeliveryStatus::Queued);
    let again = post.decide(Command::StartPublishing { delivery_id: DELIVERY_A, generation: 1 }).unwrap();
    assert_eq!(again, vec![Event::DeliveryPublishing { delivery_id: DELIVERY_A, attempt: 2 }]);
}

#[test]
fn failures_and_unknowns_decide_the_post_status() {
    let base = [
        created(PostStatus::Scheduled),
        queued(DELIVERY_A),
        publishing(DELIVERY_A),
        queued(DELIVERY_B),
        publishing(DELIVERY_B),
    ];
    let post = given(&base);
    let failed = post.decide(Command::RecordFailed { delivery_id: DELIVERY_A, error: error("invalid") }).unwrap();
    assert!(matches!(failed[0], Event::DeliveryFailed { post_status: PostStatus::Publishing, .. }));
    let post = failed.iter().fold(post, Post::evolve);
    let published = post
        .decide(Command::RecordPublished {
            delivery_id: DELIVERY_B,
            platform_post_id: "p".into(),
            platform_url: None,
            at: at(1),
        })
        .unwrap();
    assert!(matches!(published[0], Event::DeliveryPublished { post_status: PostStatus::Partial, .. }));

    let post = given(&base);
    let unknown = post.decide(Command::RecordUnknown { delivery_id: DELIVERY_A, error: error("worker_lost") }).unwrap();
    let post = unknown.iter().fold(post, Post::evolve);
    let failed = post.decide(Command::RecordFailed { delivery_id: DELIVERY_B, error: error("x") }).unwrap();
    assert!(matches!(failed[0], Event::DeliveryFailed { post_status: PostStatus::Failed, .. }));
}

#[test]
fn an_abandoned_delivery_ends_unknown_if_it_had_started_and_failed_if_not() {
    let post = given(&[created(PostStatus::Scheduled), queued(DELIVERY_A), publishing(DELIVERY_A), queued(DELIVERY_B)]);
    let abandoned =
        |delivery_id, status| Command::RecordAbandoned { delivery_id, generation: 1, status, error: error("job_lost") };
    let unknown = post.decide(abandoned(DELIVERY_A, DeliveryStatus::Publishing)).unwrap();
    assert_eq!(
        unknown,
        vec![Event::DeliveryUnknown {
            delivery_id: DELIVERY_A,
            error: error("job_lost"),
            post_status: PostStatus::Publishing
        }]
    );
    let post = unknown.iter().fold(post, Post::evolve);
    let failed = post.decide(abandoned(DELIVERY_B, DeliveryStatus::Queued)).unwrap();
    assert_eq!(
        failed,
        vec![Event::DeliveryFailed {
            delivery_id: DELIVERY_B,
            error: error("job_lost"),
            post_status: PostStatus::Failed
        }]
    );
}

#[test]
fn an_abandoned_delivery_that_moved_since_it_was_seen_is_left_alone() {
    let post = given(&[created(PostStatus::Scheduled), queued(DELIVERY_A), publishing(DELIVERY_A)]);
    // Seen queued, now publishing: a live job has it.
    let seen_queued = Command::RecordAbandoned {
        delivery_id: DELIVERY_A,
        generation: 1,
        status: DeliveryStatus::Queued,
        error: error("x"),
    };
    assert!(matches!(post.decide(seen_queued), Err(Rejection::DeliveryMoved { .. })));
    // Another generation (retried meanwhile).
    let older = Command::RecordAbandoned {
        delivery_id: DELIVERY_A,
        generation: 0,
        status: DeliveryStatus::Publishing,
        error: error("x"),
    };
    assert!(matches!(post.decide(older), Err(Rejection::DeliveryMoved { .. })));
    // Only deliveries on their way can be abandoned.
    let pending = given(&[created(PostStatus::Scheduled)]);
    let not_queued = Command::RecordAbandoned {
        delivery_id: DELIVERY_A,
        generation: 1,
        status: DeliveryStatus::Pending,
        error: error("x"),
    };
    assert!(matches!(pending.decide(not_queued), Err(Rejection::DeliveryMoved { .. })));
}

#[test]
fn outcomes_for_a_delivery_that_is_not_publishing_are_refused() {
    let post = given(&[created(PostStatus::Scheduled)]);
    for command in [
        Command::RecordRetrying { delivery_id: DELIVERY_A, error: error("x"), retry_at: at(1) },
        Command::RecordUnknown { delivery_id: DELIVERY_A, error: error("x") },
        Command::RecordPublished {
            delivery_id: DELIVERY_A,
            platform_post_id: "p".into(),
            platform_url: None,
            at: at(1),
        },
        Command::RecordFailed { delivery_id: DELIVERY_A, error: error("x") },
    ] {
        assert!(matches!(post.decide(command), Err(Rejection::DeliveryMoved { .. })));
    }
    let missing = Uuid::from_u128(99);
    assert_eq!(
        post.decide(Command::Queue { delivery_id: missing, generation: 1 }),
        Err(Rejection::UnknownDelivery(missing))
    );
}

#[test]
fn an_unknown_outcome_can_still_be_reconciled_as_published() {
    let post = given(&[
        created(PostStatus::Scheduled),
        queued(DELIVERY_A),
        publishing(DELIVERY_A),
        Event::DeliveryUnknown {
            delivery_id: DELIVERY_A,
            error: error("worker_lost"),
            post_status: PostStatus::Publishing,
        },
    ]);
    let found = post
        .decide(Command::RecordPublished {
            delivery_id: DELIVERY_A,
            platform_post_id: "p".into(),
            platform_url: None,
            at: at(1),
        })
        .unwrap();
    assert!(matches!(found[0], Event::DeliveryPublished { .. }));
}

#[test]
fn retry_takes_failed_deliveries_and_unknown_ones_only_with_force() {
    let post = given(&[
        created(PostStatus::Scheduled),
        queued(DELIVERY_A),
        publishing(DELIVERY_A),
        Event::DeliveryFailed { delivery_id: DELIVERY_A, error: error("x"), post_status: PostStatus::Publishing },
        queued(DELIVERY_B),
        publishing(DELIVERY_B),
        Event::DeliveryUnknown { delivery_id: DELIVERY_B, error: error("lost"), post_status: PostStatus::Failed },
    ]);
    let plain = post.decide(Command::Retry { force: false, now: at(100) }).unwrap();
    assert_eq!(plain, vec![Event::Retried { delivery_ids: vec![DELIVERY_A], generation: 2, scheduled_at: at(100) }]);
    let forced = post.decide(Command::Retry { force: true, now: at(100) }).unwrap();
    assert_eq!(
        forced,
        vec![Event::Retried { delivery_ids: vec![DELIVERY_A, DELIVERY_B], generation: 2, scheduled_at: at(100) }]
    );
    let post = forced.iter().fold(post, Post::evolve);
    assert!(post.deliveries.iter().all(|delivery| delivery.status == DeliveryStatus::Pending));
    assert_eq!(post.decide(Command::Retry { force: true, now: at(101) }), Err(Rejection::NothingToRetry));
}

#[test]
fn events_round_trip_through_their_stored_form() {
    let event = created(PostStatus::Scheduled);
    let payload = serde_json::to_value(&event).unwrap();
    assert_eq!(event.event_type(), "post.created");
    assert_eq!(Event::schema_version(event.event_type()), 2);
    assert_eq!(Event::decode(event.event_type(), 2, &payload).unwrap(), event);
}

#[test]
fn a_version_1_post_created_event_is_upcast() {
    let v1 = json!({
        "type": "post.created",
        "project_id": PROJECT,
        "text": "from the old days",
        "account_ids": [ACCOUNT_A],
        "scheduled_at": "2027-01-15T08:00:00Z",
        "status": "scheduled",
    });
    let event = Event::decode("post.created", 1, &v1).unwrap();
    let post = given(&[event]);
    assert_eq!(post.content, "from the old days");
    assert_eq!(post.deliveries.len(), 1);
    assert_eq!(post.deliveries[0].account_id, ACCOUNT_A);
    assert!(!post.requires_approval);
}

fn step(index: usize) -> PublishedItem {
    PublishedItem {
        index,
        platform_post_id: format!("p{index}"),
        platform_url: None,
        thread_ref: Some(format!("c{index}")),
    }
}

#[test]
fn a_chains_steps_go_in_order_one_in_flight_at_a_time_and_a_retry_resumes_after_the_published_ones() {
    let mut one_target = created(PostStatus::Scheduled);
    if let Event::Created { targets, thread, .. } = &mut one_target {
        targets.truncate(1);
        *thread = vec![ThreadItem { content: "two".into(), media: Vec::new() }; 2];
    }
    let mut post = given(&[one_target]);
    let apply = |post: Post, command| -> Post {
        let events = post.decide(command).unwrap_or_else(|rejection| panic!("{rejection}"));
        events.iter().fold(post, Post::evolve)
    };
    post = apply(post, Command::Queue { delivery_id: DELIVERY_A, generation: 1 });
    post = apply(post, Command::StartPublishing { delivery_id: DELIVERY_A, generation: 1 });
    assert_eq!(post.deliveries[0].step_in_flight, Some(0), "the post itself is in flight");
    // No later step while the post itself is in flight.
    let early = Command::StartStep { delivery_id: DELIVERY_A, generation: 1, index: 1 };
    assert!(matches!(post.decide(early), Err(Rejection::DeliveryMoved { .. })));
    post = apply(post, Command::RecordStepPublished { delivery_id: DELIVERY_A, index: 0, item: step(0) });
    let delivery = &post.deliveries[0];
    assert_eq!((delivery.status, delivery.step_in_flight, delivery.next_step()), (DeliveryStatus::Publishing, None, 1));
    assert_eq!(delivery.platform_thread_ref.as_deref(), Some("c0"));
    // Out of order, or twice: refused.
    for index in [0, 2] {
        let wrong = Command::StartStep { delivery_id: DELIVERY_A, generation: 1, index };
        assert!(matches!(post.decide(wrong), Err(Rejection::DeliveryMoved { .. })), "step {index}");
    }
    post = apply(post, Command::StartStep { delivery_id: DELIVERY_A, generation: 1, index: 1 });
    let again = Command::StartStep { delivery_id: DELIVERY_A, generation: 1, index: 1 };
    assert!(matches!(post.decide(again), Err(Rejection::DeliveryMoved { .. })), "one step in flight at a time");
    post = apply(post, Command::RecordStepPublished { delivery_id: DELIVERY_A, index: 1, item: step(1) });
    post = apply(post, Command::StartStep { delivery_id: DELIVERY_A, generation: 1, index: 2 });
    post = apply(post, Command::RecordStepRetrying { delivery_id: DELIVERY_A, index: 2, error: error("refused") });
    assert_eq!(post.deliveries[0].step_in_flight, None, "a step surely not sent is tried again");
    post = apply(post, Command::StartStep { delivery_id: DELIVERY_A, generation: 1, index: 2 });
    post = apply(post, Command::RecordFailed { delivery_id: DELIVERY_A, error: error("refused") });
    assert_eq!(post.status, PostStatus::Failed);

    // A retry keeps the published steps and resumes with the next.
    post = apply(post, Command::Retry { force: false, now: at(5) });
    post = apply(post, Command::Queue { delivery_id: DELIVERY_A, generation: 2 });
    post = apply(post, Command::StartPublishing { delivery_id: DELIVERY_A, generation: 2 });
    let delivery = &post.deliveries[0];
    assert_eq!((delivery.step_in_flight, delivery.next_step()), (None, 2), "nothing in flight; step 2 is next");
    assert_eq!(delivery.items, vec![step(1)]);
    post = apply(post, Command::StartStep { delivery_id: DELIVERY_A, generation: 2, index: 2 });
    post = apply(post, Command::RecordStepPublished { delivery_id: DELIVERY_A, index: 2, item: step(2) });
    let done = Command::RecordPublished {
        delivery_id: DELIVERY_A,
        platform_post_id: "p0".into(),
        platform_url: None,
        at: at(6),
    };
    post = apply(post, done);
    assert_eq!((post.status, post.deliveries[0].items.len()), (PostStatus::Published, 2));
}

#[test]
fn posts_recorded_before_chains_decode_without_them() {
    let old = json!({"type": "post.updated", "content": "x", "targets": [], "scheduled_at": null, "generation": 2});
    let Event::Updated { thread, first_comment, .. } = serde_json::from_value(old).unwrap() else {
        panic!("not an edit")
    };
    assert!(thread.is_empty() && first_comment.is_none());
}
