//! Every label of the console in Korean and English, as one typed table: a page names a
//! [`Label`], never a string, so a label cannot exist in one language only (the table below
//! will not compile without both) and the tests check each pair.
//!
//! The language comes from the `lang` cookie the language switch sets, else the browser's
//! `Accept-Language`, else Korean.

use axum::http::header::{ACCEPT_LANGUAGE, COOKIE};
use axum::http::{HeaderMap, HeaderValue};

/// Name of the cookie holding the chosen language (`ko` or `en`). A preference, not a secret.
pub const LANG_COOKIE: &str = "lang";

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// Korean, the default.
    #[default]
    Ko,
    /// English.
    En,
}

impl Lang {
    /// Both, in the order the language switch shows them.
    pub const ALL: [Lang; 2] = [Lang::Ko, Lang::En];

    /// The BCP 47 code, for `<html lang>` and the cookie.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ko => "ko",
            Lang::En => "en",
        }
    }

    /// The language's own name, as the switch shows it (always in that language).
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::Ko => "한국어",
            Lang::En => "English",
        }
    }

    /// The other language, which the switch offers.
    pub fn other(self) -> Lang {
        match self {
            Lang::Ko => Lang::En,
            Lang::En => Lang::Ko,
        }
    }

    /// `ko` / `en` (a primary tag with any region, any case); anything else is `None`.
    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "ko" => Some(Lang::Ko),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The request's language: the `lang` cookie, else the best `Accept-Language` entry we
    /// speak, else Korean.
    pub fn from_headers(headers: &HeaderMap) -> Lang {
        cookie_lang(headers)
            .or_else(|| accept_language(headers))
            .unwrap_or_default()
    }

    /// The `Set-Cookie` value remembering this language for a year.
    pub fn set_cookie(self) -> HeaderValue {
        // Only "ko" or "en" goes in: always a valid header value.
        HeaderValue::from_static(match self {
            Lang::Ko => "lang=ko; Path=/; Max-Age=31536000; Secure; HttpOnly; SameSite=Strict",
            Lang::En => "lang=en; Path=/; Max-Age=31536000; Secure; HttpOnly; SameSite=Strict",
        })
    }
}

fn cookie_lang(headers: &HeaderMap) -> Option<Lang> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == LANG_COOKIE)
        .and_then(|(_, value)| Lang::from_code(value))
}

/// The highest-weighted language of `Accept-Language` that the console speaks.
fn accept_language(headers: &HeaderMap) -> Option<Lang> {
    let mut best: Option<(Lang, f32)> = None;
    for entry in headers
        .get_all(ACCEPT_LANGUAGE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = entry.split(';');
        let Some(lang) = parts.next().and_then(Lang::from_code) else {
            continue;
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        // Ties keep the first listed, as the header's order states the preference.
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((lang, q));
        }
    }
    best.map(|(lang, _)| lang)
}

/// Declares [`Label`] with its Korean and English text; a missing language does not compile.
macro_rules! labels {
    ($($key:ident => $ko:literal, $en:literal;)*) => {
        /// A label of the console.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Label {
            $(
                #[doc = $en]
                $key,
            )*
        }

        impl Label {
            /// Every label, for the tests.
            pub const ALL: &'static [Label] = &[$(Label::$key),*];

            /// Its text in `lang`.
            pub fn text(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $(
                        (Label::$key, Lang::Ko) => $ko,
                        (Label::$key, Lang::En) => $en,
                    )*
                }
            }
        }
    };
}

labels! {
    // Layout
    ServiceName => "소통 직원 콘솔", "Sotong staff console";
    SkipToContent => "본문 바로가기", "Skip to main content";
    SignOut => "로그아웃", "Sign out";
    SignedInAs => "로그인 사용자", "Signed in as";
    LanguageSwitch => "언어 바꾸기", "Change language";
    Footer => "소통: 열린정부 시민 소통 서비스. 모든 조회와 작업은 감사 기록에 남습니다.",
        "Sotong, the open government citizen service. Every view and action is recorded in the audit log.";
    BackToHome => "처음 화면으로", "Back to your home page";
    ErrorSummaryTitle => "문제가 있습니다", "There is a problem";
    Error => "오류", "Error";

    // Sign in
    LoginTitle => "직원 로그인", "Sign in";
    LoginIntro => "기관 담당자, 상황 요원, 관리자가 사용하는 콘솔입니다. 시민용 앱 계정으로는 로그인할 수 없습니다.",
        "This console is for agency officers, dispatchers and administrators. Citizens' app accounts cannot sign in here.";
    Username => "사용자 이름", "Username";
    Password => "비밀번호", "Password";
    TotpLabel => "인증 코드 (2단계 인증을 설정한 경우)", "Authentication code (if you set up two-step verification)";
    TotpHint => "인증 앱에 표시된 6자리 숫자", "The 6 digits shown in your authenticator app";
    SignIn => "로그인", "Sign in";
    LoginRefused => "사용자 이름, 비밀번호 또는 인증 코드가 올바르지 않습니다",
        "The username, password or authentication code is not right";
    LoginLocked => "로그인 시도가 너무 많아 이 사용자 이름은 잠시 잠겼습니다. {0}분 후에 다시 시도하세요",
        "Too many sign-in attempts: this username is locked for now. Try again in {0} minutes";
    LoginFormRenewed => "보안 토큰이 없거나 맞지 않아 로그인하지 않았습니다. 다시 로그인하세요",
        "You were not signed in: the form's security token was missing or did not match. Sign in again";
    UsernameMissing => "사용자 이름을 입력하세요", "Enter your username";
    PasswordMissing => "비밀번호를 입력하세요", "Enter your password";
    TotpFormat => "인증 코드는 6자리 숫자로 입력하세요", "Enter the authentication code as 6 digits";
    SignedOut => "로그아웃했습니다", "You have signed out";
    SignInToContinue => "계속하려면 로그인하세요", "Sign in to continue";

    // Home
    HomeTitle => "내 업무", "Your work";
    NoGrants => "이 계정에는 아직 역할이 없습니다. 관리자에게 문의하세요.",
        "This account has no role yet. Ask an administrator.";
    RoleAdmin => "관리자", "Administrator";
    RoleAgencyOfficer => "기관 담당자", "Agency officer";
    RoleDispatcher => "상황 요원", "Dispatcher";
    CardAgency => "기관 {0}", "Agency {0}";
    CardAgencyText => "이 기관에 접수된 정책 제안과 민원", "Proposals and civil documents sent to this agency";
    CardDispatch => "지역 {0} 상황판", "Region {0} dispatch";
    CardDispatchText => "이 지역의 긴급 신고", "SOS incidents in this region";
    CardAudit => "감사 기록", "Audit log";
    CardAuditText => "누가 언제 무엇을 했는지 조회하고 내려받기", "See and download who did what, and when";
    CardStaff => "직원 계정", "Staff accounts";
    CardStaffText => "직원, 역할, 범위 목록", "Staff members, their roles and scopes";

    // Agency and dispatch
    AgencyTitle => "기관 {0}", "Agency {0}";
    RoleLabel => "역할", "Role";
    ScopeLabel => "담당 범위", "Your scope";
    AgencyComing => "이 기관에 접수된 정책 제안과 민원 서류의 목록, 처리 상태 변경과 공식 답변이 이 화면에 들어올 예정입니다. 아직 구축되지 않았습니다.",
        "This page will list the proposals and civil document applications sent to this agency, with status changes and official answers. That part is not built yet.";
    DispatchTitle => "지역 {0} 상황판", "Region {0} dispatch";
    DispatchComing => "이 지역의 긴급(SOS) 신고가 실시간으로 이 화면에 표시되고, 접수 확인, 출동 지정, 메모, 종결을 할 수 있게 될 예정입니다. 아직 구축되지 않았습니다.",
        "This page will show this region's SOS incidents live, to acknowledge, assign a unit, note and close. That part is not built yet.";
    NothingShownYet => "아직 표시할 데이터가 없습니다. 예시 데이터는 보여 주지 않습니다.",
        "There is nothing to show yet; no sample data is shown.";

    // Audit
    AuditTitle => "감사 기록", "Audit log";
    AuditIntro => "직원의 로그인, 조회, 변경 기록입니다. 최신 기록이 먼저 나옵니다. 이 화면을 본 것도 기록됩니다.",
        "Staff sign-ins, views and changes, newest first. Viewing this page is recorded too.";
    FilterLegend => "기록 찾기", "Find entries";
    FilterActor => "행위자 (사용자 이름)", "Actor (username)";
    FilterAction => "작업", "Action";
    AnyAction => "모든 작업", "Any action";
    FilterFrom => "시작일", "From";
    FilterTo => "종료일", "To";
    DateHint => "예: 2026-11-29 (UTC 기준)", "For example, 2026-11-29 (UTC)";
    DateInvalid => "날짜는 2026-11-29처럼 연-월-일로 입력하세요", "Enter the date as year-month-day, like 2026-11-29";
    ApplyFilters => "찾기", "Find";
    ClearFilters => "조건 지우기", "Clear filters";
    DownloadCsv => "이 조건의 기록을 CSV로 내려받기", "Download these entries as CSV";
    ColTime => "시각 (UTC)", "Time (UTC)";
    ColActor => "행위자", "Actor";
    ColAction => "작업", "Action";
    ColTarget => "대상", "Target";
    ColOutcome => "결과", "Outcome";
    ColIp => "IP 주소", "IP address";
    ColDetail => "세부 내용", "Detail";
    OutcomeSuccess => "성공", "Success";
    OutcomeFailure => "실패", "Failure";
    OutcomeDenied => "거부", "Denied";
    ActorUnknown => "(없는 사용자 이름)", "(unknown username)";
    ActorSystem => "(시스템)", "(system)";
    NoEntries => "조건에 맞는 기록이 없습니다.", "No entries match.";
    OlderEntries => "이전 기록", "Older entries";
    NewestEntries => "최신 기록으로", "Back to the newest";
    EntriesShown => "{0}건 표시", "{0} entries shown";

    // Staff list
    StaffTitle => "직원 계정", "Staff accounts";
    StaffIntro => "계정 추가, 사용 중지, 비밀번호 재설정은 서버에서 sotong-server staff 명령으로 합니다.",
        "Accounts are added, disabled and given new passwords on the server with the sotong-server staff command.";
    ColUsername => "사용자 이름", "Username";
    ColName => "이름", "Name";
    ColRoles => "역할과 범위", "Roles and scopes";
    ColStatus => "상태", "Status";
    ColTotp => "2단계 인증", "Two-step verification";
    StatusActive => "사용 중", "Active";
    StatusDisabled => "사용 중지", "Disabled";
    TotpOn => "설정됨", "On";
    TotpOff => "설정 안 됨", "Off";
    NoStaff => "직원 계정이 없습니다.", "There are no staff accounts.";

    // Refusals
    Denied401Title => "로그인이 필요합니다", "You need to sign in";
    Denied401Text => "로그인하지 않았거나 세션이 끝났습니다. 다시 로그인하세요.",
        "You have not signed in, or your session has ended. Sign in again.";
    GoToSignIn => "로그인 화면으로", "Go to the sign-in page";
    Denied403Title => "이 페이지를 볼 권한이 없습니다", "You do not have access to this page";
    Denied403Text => "이 시도는 감사 기록에 남았습니다. 권한이 필요하면 관리자에게 문의하세요.",
        "This attempt has been recorded in the audit log. If you need access, ask an administrator.";
    Denied404Title => "페이지를 찾을 수 없습니다", "Page not found";
    Denied404Text => "주소를 입력했다면 맞는지 확인하세요.", "If you typed the address, check it is correct.";
    CsrfTitle => "요청을 처리하지 않았습니다", "Your request was not sent";
    CsrfText => "양식의 보안 토큰이 없거나 맞지 않아 요청을 거부했습니다. 페이지를 새로 고친 뒤 다시 시도하세요.",
        "The form's security token was missing or did not match, so the request was refused. Reload the page and try again.";
    TooLargeTitle => "요청이 너무 큽니다", "The form sent is too large";
    TooLargeText => "입력한 내용을 줄인 뒤 다시 시도하세요.", "Shorten what you entered and try again.";
    Error500Title => "서비스에 문제가 있습니다", "Sorry, there is a problem with the service";
    Error500Text => "잠시 후 다시 시도하세요.", "Try again later.";

    // SOS summary (admins)
    CardSosSummary => "긴급 신고 통계", "SOS summary";
    CardSosSummaryText => "지역별, 월별 긴급 신고, 처리 결과와 시민 의견", "SOS incidents, outcomes and citizens' feedback by region and month";
    SummaryTitle => "긴급 신고 통계", "SOS summary";
    SummaryIntro => "신고가 접수된 달(한국 표준시)과 지역별 집계입니다. 접수 확인 시간은 접수부터 첫 확인 또는 출동 지정까지의 중앙값입니다. 이 화면을 본 것도 기록됩니다.",
        "Counts by region and by the month an incident was received (Korea Standard Time). Time to acknowledge is the median from receipt to the first acknowledgment or assignment. Viewing this page is recorded too.";
    SummaryRange => "기간", "Months";
    MonthHint => "예: 2026-11 (연-월)", "For example, 2026-11 (year-month)";
    MonthInvalid => "월은 2026-11처럼 연-월로 입력하세요", "Enter the month as year-month, like 2026-11";
    MonthRangeInvalid => "종료 월은 시작 월과 같거나 뒤여야 하고, 기간은 10년 이내여야 합니다", "The last month must not be before the first, and the range must be at most 10 years";
    SummaryCsv => "이 기간의 통계를 CSV로 내려받기", "Download this summary as CSV";
    SummaryNone => "이 기간에 접수된 긴급 신고가 없습니다.", "No SOS incidents were received in these months.";
    SummaryNoRegion => "(위치 없음)", "(no position)";
    SummaryColMonth => "월", "Month";
    SummaryColRegion => "지역", "Region";
    SummaryColIncidents => "신고", "Incidents";
    SummaryColDuress => "강요 상황", "Under duress";
    SummaryColMedianAck => "접수 확인 시간 (중앙값)", "Time to acknowledge (median)";
    SummaryColOutcomes => "종결 결과", "Closed, by outcome";
    SummaryColFeedback => "시민 의견", "Feedback";
    SummaryColRating => "평균 평점 (1–5)", "Mean rating (1–5)";
    SummaryColFeltSafe => "안전하다고 느낌", "Felt safe";
    SosOutcomeAssisted => "현장 조치", "Assisted on scene";
    SosOutcomeArrest => "검거", "Arrest";
    SosOutcomeReferred => "기관 연계", "Referred";
    SosOutcomeTransported => "이송", "Transported";
    SosOutcomeCallerCancelled => "신고자 취소", "Cancelled by the caller";
    SosOutcomeFalseAlarm => "오인 신고", "False alarm";
    SosOutcomeNotFound => "발견 못 함", "Not found";
    SosOutcomeOther => "기타", "Other";
    // Dispatch console (SOS)
    DispatchIntro => "진행 중인 긴급 신고입니다. 강요(듀레스) 신고가 먼저, 그다음 오래 기다린 신고 순서입니다. 화면은 실시간으로 바뀝니다.",
        "Active SOS incidents: duress first, then the longest waiting. The page updates live.";
    IncidentsHeading => "진행 중인 신고", "Active incidents";
    ColRegion => "지역", "Region";
    ColAge => "경과", "Age";
    ColState => "상태", "State";
    ColLastFix => "마지막 위치 (UTC, 정확도)", "Last fix (UTC, accuracy)";
    ColBattery => "배터리", "Battery";
    ColUnread => "읽지 않은 답장", "Unread replies";
    ColOpen => "열기", "Open";
    OpenIncident => "열기", "Open";
    NoIncidents => "진행 중인 신고가 없습니다.", "There are no active incidents.";
    NoFixYet => "위치 없음", "No fix yet";
    Unrouted => "지역 밖", "Outside every region";
    UnknownValue => "알 수 없음", "Unknown";
    SosStateNew => "신규", "New";
    SosStateAcknowledged => "접수 확인", "Acknowledged";
    SosStateUnitAssigned => "출동 중", "Unit assigned";
    SosStateResolved => "종결", "Resolved";
    SosStateCancelled => "신고자가 취소", "Cancelled by the caller";
    SosStateDuress => "강요 상황(듀레스)", "Duress";
    AgeMinutes => "{0}분", "{0} min";
    AgeHours => "{0}시간 {1}분", "{0} h {1} min";
    LiveConnecting => "실시간 연결 중…", "Connecting to the live feed…";
    LiveOn => "실시간 연결됨", "Live";
    LiveLost => "연결이 끊겨 다시 연결하는 중입니다", "Connection lost: reconnecting";
    SoundOn => "알림음 끄기", "Turn sound off";
    SoundOff => "알림음 켜기", "Turn sound on";
    SoundBanner => "브라우저는 클릭하기 전에는 소리를 내지 않습니다. 새 신고 알림음을 들으려면 \"알림음 켜기\"를 누르세요.",
        "Browsers play no sound until you click. To hear an alert for each new incident, select \"Turn sound on\".";
    NewIncidentAlert => "새 신고가 들어왔습니다", "New incident";
    NeedsScript => "지도, 대화와 조치에는 자바스크립트가 필요합니다. 목록은 새로 고치면 바뀝니다.",
        "The map, the conversation and the actions need JavaScript. Reload the page to update the list.";
    MapHeading => "지도", "Map";
    MapNoTiles => "지도 타일이 설정되지 않아 위치를 좌표 격자 위에 표시합니다.",
        "No map tiles are configured: positions are drawn on a grid of coordinates.";
    MapLegend => "점: 마지막 위치, 원: 정확도 반경, 선: 이동 경로", "Dot: last position; circle: accuracy radius; line: trail";
    SelectIncident => "목록에서 신고를 열면 지도, 대화, 조치가 표시됩니다.",
        "Open an incident in the list to see its map, conversation and actions.";
    IncidentHeading => "신고 {0}", "Incident {0}";
    TriggerLabel => "신고 방법", "Triggered by";
    UnitAssignedLabel => "출동 단위", "Unit";
    ThreadHeading => "대화", "Conversation";
    NoMessages => "아직 메시지가 없습니다.", "No messages yet.";
    FromDispatch => "상황실", "Dispatch";
    FromCaller => "신고자", "Caller";
    NoteFromDispatch => "메모 (신고자에게 보이지 않음)", "Note (not shown to the caller)";
    QuickYes => "예", "Yes";
    QuickNo => "아니요", "No";
    QuickCantTalk => "말할 수 없음", "Can't talk";
    MessageLabel => "신고자에게 보낼 메시지", "Message to the caller";
    MessageHint => "신고자의 휴대폰에 소리 없이 표시됩니다.", "It appears silently on the caller's phone.";
    SendMessage => "보내기", "Send";
    ActionsHeading => "조치", "Actions";
    AcknowledgeAction => "접수 확인", "Acknowledge";
    UnitLabel => "출동 단위 (호출 부호)", "Unit (call sign)";
    AssignAction => "출동 지정", "Assign unit";
    NoteLabel => "메모 (상황실 전용)", "Note (dispatch only)";
    AddNoteAction => "메모 추가", "Add note";
    OutcomeLabel => "종결 결과", "Outcome";
    ChooseOutcome => "결과를 선택하세요", "Choose an outcome";
    CloseAction => "종결", "Close incident";
    MessageMissing => "보낼 메시지를 입력하세요", "Enter a message to send";
    NoteMissing => "메모를 입력하세요", "Enter the note";
    UnitMissing => "출동 단위를 입력하세요", "Enter the unit";
    OutcomeMissing => "종결 결과를 선택하세요", "Choose an outcome";
    ActionFailed => "요청을 처리하지 못했습니다: {0}", "The request failed: {0}";
    ActionDone => "처리했습니다", "Done";
}

impl Label {
    /// Its text in `lang` with `{0}` replaced by `arg`.
    pub fn fill(self, lang: Lang, arg: &str) -> String {
        self.text(lang).replace("{0}", arg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_hangul(s: &str) -> bool {
        s.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c))
    }

    #[test]
    fn every_label_has_korean_and_english() {
        assert!(Label::ALL.len() > 50);
        for label in Label::ALL {
            let ko = label.text(Lang::Ko);
            let en = label.text(Lang::En);
            assert!(!ko.trim().is_empty(), "{label:?} has no Korean");
            assert!(!en.trim().is_empty(), "{label:?} has no English");
            assert!(
                has_hangul(ko),
                "{label:?}'s Korean text has no Hangul: {ko}"
            );
            assert!(!has_hangul(en), "{label:?}'s English text has Hangul: {en}");
            assert_eq!(
                ko.contains("{0}"),
                en.contains("{0}"),
                "{label:?}: a placeholder in one language only"
            );
        }
    }

    #[test]
    fn fill_replaces_the_placeholder() {
        assert_eq!(Label::CardAgency.fill(Lang::En, "MOLIT"), "Agency MOLIT");
        assert_eq!(Label::CardAgency.fill(Lang::Ko, "MOLIT"), "기관 MOLIT");
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_cookie_wins_then_accept_language_then_korean() {
        assert_eq!(Lang::from_headers(&headers(&[])), Lang::Ko);
        assert_eq!(
            Lang::from_headers(&headers(&[("accept-language", "en-GB,en;q=0.9")])),
            Lang::En
        );
        assert_eq!(
            Lang::from_headers(&headers(&[
                ("accept-language", "en-US"),
                ("cookie", "a=b; lang=ko")
            ])),
            Lang::Ko
        );
        assert_eq!(
            Lang::from_headers(&headers(&[
                ("cookie", "lang=fr"),
                ("accept-language", "en")
            ])),
            Lang::En
        );
    }

    #[test]
    fn accept_language_follows_weights_and_skips_what_we_do_not_speak() {
        let h = headers(&[("accept-language", "fr-FR, en;q=0.5, ko;q=0.8")]);
        assert_eq!(Lang::from_headers(&h), Lang::Ko);
        let h = headers(&[("accept-language", "de, ja;q=0.9")]);
        assert_eq!(Lang::from_headers(&h), Lang::Ko);
        let h = headers(&[("accept-language", "ko;q=0, en;q=0.1")]);
        assert_eq!(Lang::from_headers(&h), Lang::En);
        let h = headers(&[("accept-language", ";;;,q=,en;q=abc")]);
        assert_eq!(Lang::from_headers(&h), Lang::En);
    }
}
