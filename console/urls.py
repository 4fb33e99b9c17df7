from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import oidc
from console.access import public, signed_in
from console.api.metrics import MetricsView
from console.security import LoginForm
from console.views import (
    alerts,
    api_docs,
    audit,
    bench,
    channel_config,
    channels,
    config_code,
    dashboard,
    destinations,
    mapping,
    messages,
    replay,
    system,
    versions,
)

# Every view declares who may open it (console.access); Django's auth views
# are declared here because they are not ours to decorate.

urlpatterns = [
    path("", dashboard.dashboard_page, name="home"),
    path("dashboard/data/", dashboard.dashboard_data, name="dashboard-data"),
    path(
        "login/",
        public(
            auth_views.LoginView.as_view(template_name="login.html", authentication_form=LoginForm)
        ),
        name="login",
    ),
    path("logout/", signed_in(auth_views.LogoutView.as_view()), name="logout"),
    path("messages/", messages.message_list, name="messages"),
    path("messages/<int:pk>/", messages.message_detail, name="message"),
    path("messages/<int:pk>/reveal/", messages.message_reveal, name="message-reveal"),
    path("messages/<int:pk>/replay/", replay.message_replay, name="message-replay"),
    path("messages/<int:pk>/resend/", replay.message_resend, name="message-resend"),
    path("messages/replay/", replay.message_replay_bulk, name="message-replay-bulk"),
    path("messages/replay/<int:pk>/", replay.replay_job, name="replay-job"),
    *(
        path(
            f"messages/replay/<int:pk>/{action}/",
            replay.replay_job_steer,
            {"action": action},
            name=f"replay-job-{action}",
        )
        for action in ("pause", "resume", "cancel")
    ),
    path("channels/", channels.channel_list, name="channels"),
    path("channels/new/", channel_config.channel_new, name="channel-new"),
    path("channels/export/", config_code.channels_export, name="channels-export"),
    path("channels/import/", config_code.channels_import, name="channels-import"),
    path("channels/<int:pk>/export/", config_code.channel_export, name="channel-export"),
    path("channels/<int:pk>/edit/", channel_config.channel_edit, name="channel-edit"),
    path("channels/<int:pk>/clone/", channel_config.channel_clone, name="channel-clone"),
    path("channels/<int:pk>/enable/", channel_config.channel_enable, name="channel-enable"),
    path("channels/<int:pk>/disable/", channel_config.channel_disable, name="channel-disable"),
    path("channels/<int:pk>/archive/", channel_config.channel_archive, name="channel-archive"),
    path("channels/<int:pk>/restore/", channel_config.channel_restore, name="channel-restore"),
    path("channels/<int:pk>/delete/", channel_config.channel_delete, name="channel-delete"),
    path(
        "channels/<int:pk>/source-state/",
        channels.channel_source_state,
        name="channel-source-state",
    ),
    path("channels/<int:pk>/pause/", channels.channel_pause, name="channel-pause"),
    path("channels/<int:pk>/resume/", channels.channel_resume, name="channel-resume"),
    path("channels/<int:pk>/mapping/", mapping.mapping_page, name="mapping"),
    path("channels/<int:pk>/mapping/save/", mapping.mapping_save, name="mapping-save"),
    path("channels/<int:pk>/mapping/preview/", mapping.mapping_preview, name="mapping-preview"),
    path("channels/<int:pk>/publish/", versions.draft_publish, name="channel-publish"),
    path("channels/<int:pk>/draft/discard/", versions.draft_discard, name="channel-draft-discard"),
    path("channels/<int:pk>/versions/", versions.channel_versions, name="channel-versions"),
    path(
        "channels/<int:pk>/versions/<int:number>/rollback/",
        versions.channel_rollback,
        name="channel-rollback",
    ),
    path("channels/<int:pk>/bench/", bench.bench_page, name="bench"),
    path("channels/<int:pk>/bench/run/", bench.bench_run, name="bench-run"),
    path("channels/<int:pk>/bench/samples/", bench.bench_sample_new, name="bench-sample-new"),
    path("channels/<int:pk>/bench/copy/", bench.bench_sample_copy, name="bench-sample-copy"),
    path("channels/<int:pk>/bench/suite/", bench.bench_suite, name="bench-suite"),
    path("bench/samples/<int:pk>/run/", bench.bench_sample_run, name="bench-sample-run"),
    path("bench/samples/<int:pk>/accept/", bench.bench_sample_accept, name="bench-sample-accept"),
    path("bench/samples/<int:pk>/delete/", bench.bench_sample_delete, name="bench-sample-delete"),
    path(
        "channels/<int:pk>/destinations/new/",
        destinations.destination_new,
        name="destination-new",
    ),
    path("destinations/<int:pk>/edit/", destinations.destination_edit, name="destination-edit"),
    path("destinations/<int:pk>/pause/", channels.destination_pause, name="destination-pause"),
    path("destinations/<int:pk>/resume/", channels.destination_resume, name="destination-resume"),
    path("alerts/", alerts.alert_list, name="alerts"),
    path("alerts/<int:pk>/acknowledge/", alerts.alert_acknowledge, name="alert-acknowledge"),
    path("alerts/<int:pk>/resolve/", alerts.alert_resolve, name="alert-resolve"),
    path("alerts/rules/new/", alerts.rule_new, name="alert-rule-new"),
    path("alerts/rules/<int:pk>/edit/", alerts.rule_edit, name="alert-rule-edit"),
    path("audit/", audit.audit_list, name="audit"),
    path("audit/export.csv", audit.audit_export, name="audit-export"),
    path("audit/unlock/", audit.audit_unlock, name="audit-unlock"),
    path("system/", system.system, name="system"),
    path("api/docs/", api_docs.api_docs, name="api-docs"),
    path("api/v1/", include("console.api.urls")),
    path("metrics", MetricsView.as_view(), name="metrics"),
]

# Single sign-on's two public steps exist only where it is configured (OIDC_RP_CLIENT_ID).
if settings.OIDC_ENABLED:
    urlpatterns += oidc.urlpatterns
