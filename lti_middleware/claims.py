"""Claim names, message types, roles, scopes and media types from the LTI specs.

Spelled exactly as the specs spell them; a test checks none carries stray
whitespace, a bug shipped libraries have had.
"""

from __future__ import annotations

_LTI = "https://purl.imsglobal.org/spec/lti/claim/"

MESSAGE_TYPE = _LTI + "message_type"
VERSION = _LTI + "version"
DEPLOYMENT_ID = _LTI + "deployment_id"
TARGET_LINK_URI = _LTI + "target_link_uri"
RESOURCE_LINK = _LTI + "resource_link"
ROLES = _LTI + "roles"
CONTEXT = _LTI + "context"
TOOL_PLATFORM = _LTI + "tool_platform"
LAUNCH_PRESENTATION = _LTI + "launch_presentation"
LIS = _LTI + "lis"
CUSTOM = _LTI + "custom"
ROLE_SCOPE_MENTOR = _LTI + "role_scope_mentor"
FOR_USER = _LTI + "for_user"
LTI1P1 = _LTI + "lti1p1"

AGS_ENDPOINT = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_SERVICE = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
DEEP_LINKING_SETTINGS = (
    "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
)
CONTENT_ITEMS = "https://purl.imsglobal.org/spec/lti-dl/claim/content_items"
DEEP_LINKING_DATA = "https://purl.imsglobal.org/spec/lti-dl/claim/data"
DEEP_LINKING_MSG = "https://purl.imsglobal.org/spec/lti-dl/claim/msg"
DEEP_LINKING_LOG = "https://purl.imsglobal.org/spec/lti-dl/claim/log"
DEEP_LINKING_ERRORMSG = "https://purl.imsglobal.org/spec/lti-dl/claim/errormsg"
DEEP_LINKING_ERRORLOG = "https://purl.imsglobal.org/spec/lti-dl/claim/errorlog"

LTI_VERSION = "1.3.0"

RESOURCE_LINK_REQUEST = "LtiResourceLinkRequest"
DEEP_LINKING_REQUEST = "LtiDeepLinkingRequest"
DEEP_LINKING_RESPONSE = "LtiDeepLinkingResponse"
SUBMISSION_REVIEW_REQUEST = "LtiSubmissionReviewRequest"

MEMBERSHIP_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
INSTITUTION_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#"
SYSTEM_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/system/person#"

SCOPE_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
SCOPE_LINEITEM_READONLY = (
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
)
SCOPE_RESULT_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
SCOPE_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
SCOPE_NRPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"

MEDIA_TYPE_SCORE = "application/vnd.ims.lis.v1.score+json"
MEDIA_TYPE_LINEITEM = "application/vnd.ims.lis.v2.lineitem+json"
MEDIA_TYPE_LINEITEMS = "application/vnd.ims.lis.v2.lineitemcontainer+json"
MEDIA_TYPE_RESULTS = "application/vnd.ims.lis.v2.resultcontainer+json"
MEDIA_TYPE_MEMBERSHIPS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: Claims each message type must carry, beyond iss/aud/exp/iat/nonce/version/
#: deployment_id/message_type which every launch needs (LTI Core 5.3, 5.4; DL 4.4).
REQUIRED_CLAIMS: dict[str, tuple[str, ...]] = {
    RESOURCE_LINK_REQUEST: (RESOURCE_LINK, ROLES, TARGET_LINK_URI),
    DEEP_LINKING_REQUEST: (DEEP_LINKING_SETTINGS, ROLES),
    SUBMISSION_REVIEW_REQUEST: (AGS_ENDPOINT, FOR_USER, ROLES, TARGET_LINK_URI),
}
