#include "server/store/schema.h"

namespace chorus::store {

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> all = {
      {1,
       "systems, users, sessions, teams, channels, posts, statuses, preferences",
       "0.1",
       {
           "CREATE TABLE Systems (Name VARCHAR(64) PRIMARY KEY, Value TEXT NOT NULL)",
           "CREATE TABLE Users (Id VARCHAR(26) PRIMARY KEY, CreateAt BIGINT NOT NULL, UpdateAt BIGINT NOT NULL,"
           " DeleteAt BIGINT NOT NULL DEFAULT 0, Username VARCHAR(64) NOT NULL UNIQUE, Password VARCHAR(128) NOT NULL,"
           " Email VARCHAR(128) NOT NULL UNIQUE, EmailVerified INTEGER NOT NULL DEFAULT 0, Nickname VARCHAR(64) NOT "
           "NULL DEFAULT '',"
           " FirstName VARCHAR(64) NOT NULL DEFAULT '', LastName VARCHAR(64) NOT NULL DEFAULT '', Position "
           "VARCHAR(128) NOT NULL DEFAULT '',"
           " Roles VARCHAR(256) NOT NULL, Locale VARCHAR(5) NOT NULL DEFAULT 'en', LastPasswordUpdate BIGINT NOT NULL "
           "DEFAULT 0)",
           "CREATE TABLE Sessions (Id VARCHAR(26) PRIMARY KEY, Token VARCHAR(26) NOT NULL UNIQUE, CreateAt BIGINT NOT "
           "NULL,"
           " ExpiresAt BIGINT NOT NULL, LastActivityAt BIGINT NOT NULL, UserId VARCHAR(26) NOT NULL, DeviceId TEXT NOT "
           "NULL DEFAULT '',"
           " Roles VARCHAR(256) NOT NULL, Props TEXT NOT NULL DEFAULT '{}')",
           "CREATE INDEX idx_sessions_user_id ON Sessions (UserId)",
           "CREATE TABLE Teams (Id VARCHAR(26) PRIMARY KEY, CreateAt BIGINT NOT NULL, UpdateAt BIGINT NOT NULL,"
           " DeleteAt BIGINT NOT NULL DEFAULT 0, DisplayName VARCHAR(64) NOT NULL, Name VARCHAR(64) NOT NULL UNIQUE,"
           " Description VARCHAR(255) NOT NULL DEFAULT '', Email VARCHAR(128) NOT NULL DEFAULT '', Type VARCHAR(1) NOT "
           "NULL,"
           " AllowOpenInvite INTEGER NOT NULL DEFAULT 0)",
           "CREATE TABLE TeamMembers (TeamId VARCHAR(26) NOT NULL, UserId VARCHAR(26) NOT NULL, Roles VARCHAR(256) NOT "
           "NULL,"
           " DeleteAt BIGINT NOT NULL DEFAULT 0, CreateAt BIGINT NOT NULL, PRIMARY KEY (TeamId, UserId))",
           "CREATE INDEX idx_teammembers_user_id ON TeamMembers (UserId)",
           "CREATE TABLE Channels (Id VARCHAR(26) PRIMARY KEY, CreateAt BIGINT NOT NULL, UpdateAt BIGINT NOT NULL,"
           " DeleteAt BIGINT NOT NULL DEFAULT 0, TeamId VARCHAR(26) NOT NULL, Type VARCHAR(1) NOT NULL,"
           " DisplayName VARCHAR(64) NOT NULL, Name VARCHAR(64) NOT NULL, Header TEXT NOT NULL DEFAULT '',"
           " Purpose VARCHAR(250) NOT NULL DEFAULT '', LastPostAt BIGINT NOT NULL DEFAULT 0, TotalMsgCount BIGINT NOT "
           "NULL DEFAULT 0,"
           " CreatorId VARCHAR(26) NOT NULL DEFAULT '', UNIQUE (Name, TeamId))",
           "CREATE INDEX idx_channels_team_id ON Channels (TeamId)",
           "CREATE TABLE ChannelMembers (ChannelId VARCHAR(26) NOT NULL, UserId VARCHAR(26) NOT NULL, Roles "
           "VARCHAR(256) NOT NULL,"
           " LastViewedAt BIGINT NOT NULL DEFAULT 0, MsgCount BIGINT NOT NULL DEFAULT 0, MentionCount BIGINT NOT NULL "
           "DEFAULT 0,"
           " NotifyProps TEXT NOT NULL DEFAULT '{}', LastUpdateAt BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (ChannelId, "
           "UserId))",
           "CREATE INDEX idx_channelmembers_user_id ON ChannelMembers (UserId)",
           "CREATE TABLE Posts (Id VARCHAR(26) PRIMARY KEY, CreateAt BIGINT NOT NULL, UpdateAt BIGINT NOT NULL,"
           " EditAt BIGINT NOT NULL DEFAULT 0, DeleteAt BIGINT NOT NULL DEFAULT 0, UserId VARCHAR(26) NOT NULL,"
           " ChannelId VARCHAR(26) NOT NULL, RootId VARCHAR(26) NOT NULL DEFAULT '', OriginalId VARCHAR(26) NOT NULL "
           "DEFAULT '',"
           " Message TEXT NOT NULL, Type VARCHAR(26) NOT NULL DEFAULT '', Props TEXT NOT NULL DEFAULT '{}',"
           " Hashtags TEXT NOT NULL DEFAULT '', PendingPostId VARCHAR(64) NOT NULL DEFAULT '')",
           "CREATE INDEX idx_posts_channel_id_create_at ON Posts (ChannelId, CreateAt)",
           "CREATE INDEX idx_posts_create_at ON Posts (CreateAt)",
           "CREATE TABLE Status (UserId VARCHAR(26) PRIMARY KEY, Status VARCHAR(32) NOT NULL, Manual INTEGER NOT NULL "
           "DEFAULT 0,"
           " LastActivityAt BIGINT NOT NULL)",
           "CREATE TABLE Preferences (UserId VARCHAR(26) NOT NULL, Category VARCHAR(32) NOT NULL, Name VARCHAR(32) NOT "
           "NULL,"
           " Value TEXT NOT NULL, PRIMARY KEY (UserId, Category, Name))",
       }},
      {2,
       "jobs and cluster discovery",
       "0.1",
       {
           "CREATE TABLE Jobs (Id VARCHAR(26) PRIMARY KEY, Type VARCHAR(32) NOT NULL, Priority BIGINT NOT NULL DEFAULT "
           "0,"
           " CreateAt BIGINT NOT NULL, StartAt BIGINT NOT NULL DEFAULT 0, LastActivityAt BIGINT NOT NULL DEFAULT 0,"
           " Status VARCHAR(32) NOT NULL, Progress BIGINT NOT NULL DEFAULT 0, Data TEXT NOT NULL DEFAULT '{}',"
           " ScheduleKey VARCHAR(128) UNIQUE, WorkerId VARCHAR(64) NOT NULL DEFAULT '')",
           "CREATE INDEX idx_jobs_type_status ON Jobs (Type, Status)",
           "CREATE TABLE ClusterDiscovery (Id VARCHAR(26) PRIMARY KEY, Type VARCHAR(64) NOT NULL, ClusterName "
           "VARCHAR(64) NOT NULL,"
           " Hostname TEXT NOT NULL, GossipPort INTEGER NOT NULL, Port INTEGER NOT NULL DEFAULT 0, CreateAt BIGINT NOT "
           "NULL,"
           " LastPingAt BIGINT NOT NULL)",
           "CREATE INDEX idx_clusterdiscovery_type_cluster ON ClusterDiscovery (Type, ClusterName)",
       }},
      {3,
       "posts: one post per client pending id, posts changed since",
       "0.1",
       {
           // A client retrying a post (same pending_post_id) gets the first one back, on any node.
           "CREATE UNIQUE INDEX idx_posts_user_pending ON Posts (UserId, PendingPostId) WHERE PendingPostId <> ''",
           "CREATE INDEX idx_posts_channel_update_at ON Posts (ChannelId, UpdateAt)",
       }},
      {4,
       "jobs: attempts (a fencing token for workers); the full-text search index of posts",
       "0.1",
       {
           "ALTER TABLE Jobs ADD COLUMN Attempts BIGINT NOT NULL DEFAULT 0",
           "CREATE INDEX idx_jobs_status_activity ON Jobs (Status, LastActivityAt)",
       },
       // PostgreSQL: a tsvector per post with a GIN index ('simple' configuration: no stemming, any language).
       {"CREATE TABLE PostsFts (PostId VARCHAR(26) PRIMARY KEY, ChannelId VARCHAR(26) NOT NULL, Body TSVECTOR NOT "
        "NULL)",
        "CREATE INDEX idx_postsfts_body ON PostsFts USING GIN (Body)"},
       // SQLite: an FTS5 table (unicode61 tokenizer, case-folding).
       {"CREATE VIRTUAL TABLE PostsFts USING fts5(Message, PostId UNINDEXED, ChannelId UNINDEXED)"}},
      {5,
       "cluster discovery: a heartbeat with the node's reach (which side of a partition serves)",
       "0.1",
       {
           "ALTER TABLE ClusterDiscovery ADD COLUMN Beat BIGINT NOT NULL DEFAULT 0",
           "ALTER TABLE ClusterDiscovery ADD COLUMN Reach TEXT NOT NULL DEFAULT ''",
           "ALTER TABLE ClusterDiscovery ADD COLUMN CutOff INTEGER NOT NULL DEFAULT 0",
       }},
      {6,
       "users: failed login attempts (ServiceSettings.MaximumLoginAttempts locks the account)",
       "0.1",
       {
           "ALTER TABLE Users ADD COLUMN FailedAttempts BIGINT NOT NULL DEFAULT 0",
       }},
      {7,
       "posts: the outbox (a committed post is published even when its node dies before its event goes)",
       "0.1",
       {
           "CREATE TABLE PostOutbox (PostId VARCHAR(26) PRIMARY KEY, ChannelId VARCHAR(26) NOT NULL,"
           " Seq BIGINT NOT NULL, TouchedAt BIGINT NOT NULL)",
           "CREATE INDEX idx_postoutbox_touched ON PostOutbox (TouchedAt)",
       }},
      {8,
       "what the official apps read: user settings, sidebar categories, direct and group channels",
       "0.1",
       {
           // Mattermost's defaults, so that every user has the notify_props and timezone the apps read.
           "ALTER TABLE Users ADD COLUMN Props TEXT NOT NULL DEFAULT '{}'",
           "ALTER TABLE Users ADD COLUMN NotifyProps TEXT NOT NULL DEFAULT '{\"channel\":\"true\",\"comments\":"
           "\"never\",\"desktop\":\"mention\",\"desktop_sound\":\"true\",\"email\":\"true\",\"first_name\":"
           "\"false\",\"mention_keys\":\"\",\"push\":\"mention\",\"push_status\":\"away\"}'",
           "ALTER TABLE Users ADD COLUMN Timezone TEXT NOT NULL DEFAULT '{\"automaticTimezone\":\"\",\"manualTimezone\":"
           "\"\",\"useAutomaticTimezone\":\"true\"}'",
           "CREATE TABLE SidebarCategories (Id VARCHAR(128) PRIMARY KEY, UserId VARCHAR(26) NOT NULL,"
           " TeamId VARCHAR(26) NOT NULL, Type VARCHAR(32) NOT NULL, DisplayName VARCHAR(64) NOT NULL,"
           " Sorting VARCHAR(64) NOT NULL DEFAULT '', SortOrder BIGINT NOT NULL DEFAULT 0,"
           " Muted INTEGER NOT NULL DEFAULT 0, Collapsed INTEGER NOT NULL DEFAULT 0)",
           "CREATE INDEX idx_sidebarcategories_user_team ON SidebarCategories (UserId, TeamId)",
           // A channel the user placed in a category; a channel in none shows in its default category.
           "CREATE TABLE SidebarChannels (CategoryId VARCHAR(128) NOT NULL, ChannelId VARCHAR(26) NOT NULL,"
           " UserId VARCHAR(26) NOT NULL, SortOrder BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (CategoryId, ChannelId))",
           "CREATE INDEX idx_sidebarchannels_user ON SidebarChannels (UserId)",
           "CREATE INDEX idx_channels_type ON Channels (Type)",
           // Each change to a user's own state counts here, in its transaction: its event carries the
           // count, so that the user's events are delivered in the order of the changes (hub.h: user_seq).
           "ALTER TABLE Users ADD COLUMN EventSeq BIGINT NOT NULL DEFAULT 0",
       }},
      {9,
       "conversations: pins, reactions, edit history, replies by thread, the outbox of post changes",
       "0.1",
       {
           "ALTER TABLE Posts ADD COLUMN IsPinned INTEGER NOT NULL DEFAULT 0",
           "CREATE INDEX idx_posts_root_id ON Posts (RootId)",
           "CREATE TABLE Reactions (UserId VARCHAR(26) NOT NULL, PostId VARCHAR(26) NOT NULL,"
           " EmojiName VARCHAR(64) NOT NULL, CreateAt BIGINT NOT NULL, UpdateAt BIGINT NOT NULL,"
           " DeleteAt BIGINT NOT NULL DEFAULT 0, ChannelId VARCHAR(26) NOT NULL, PRIMARY KEY (PostId, UserId, EmojiName))",
           // Each edit keeps the message it replaced (the compliance export shows a post's history).
           "CREATE TABLE PostEdits (PostId VARCHAR(26) NOT NULL, EditAt BIGINT NOT NULL, UserId VARCHAR(26) NOT NULL,"
           " Message TEXT NOT NULL, PRIMARY KEY (PostId, EditAt))",
           // A post's latest change until every peer has its event (as PostOutbox for new posts): a change
           // committed by a node that dies before publishing it is published by the sweep.
           "CREATE TABLE PostChangeOutbox (PostId VARCHAR(26) PRIMARY KEY, UpdateAt BIGINT NOT NULL,"
           " TouchedAt BIGINT NOT NULL)",
           "CREATE INDEX idx_postchangeoutbox_touched ON PostChangeOutbox (TouchedAt)",
       }},
      {10,
       "files: uploads in the shared file store, attached to posts",
       "0.1",
       {
           "CREATE TABLE FileInfo (Id VARCHAR(26) PRIMARY KEY, CreatorId VARCHAR(26) NOT NULL,"
           " PostId VARCHAR(26) NOT NULL DEFAULT '', ChannelId VARCHAR(26) NOT NULL, CreateAt BIGINT NOT NULL,"
           " UpdateAt BIGINT NOT NULL, DeleteAt BIGINT NOT NULL DEFAULT 0, Path TEXT NOT NULL,"
           " ThumbnailPath TEXT NOT NULL DEFAULT '', PreviewPath TEXT NOT NULL DEFAULT '', Name TEXT NOT NULL,"
           " Extension VARCHAR(64) NOT NULL DEFAULT '', MimeType VARCHAR(128) NOT NULL, Size BIGINT NOT NULL,"
           " Width BIGINT NOT NULL DEFAULT 0, Height BIGINT NOT NULL DEFAULT 0, HasPreviewImage INTEGER NOT NULL DEFAULT 0)",
           "CREATE INDEX idx_fileinfo_post_id ON FileInfo (PostId)",
           "ALTER TABLE Posts ADD COLUMN FileIds TEXT NOT NULL DEFAULT '[]'",
       }},
  };
  return all;
}

}  // namespace chorus::store
