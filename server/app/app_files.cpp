// Files: uploads to the shared file store, their thumbnails and previews, and reading them back (app.h,
// "Files").
#include <ctime>

#include "server/app/app.h"
#include "server/app/app_internal.h"
#include "server/app/images.h"
#include "server/core/flow.h"
#include "server/core/ids.h"
#include "server/store/store.h"

namespace chorus::app {

using namespace detail;

namespace {

constexpr size_t kFilesPerUpload = 10;  // as per post (Mattermost's limit of file_ids)

// The name as the client gave it, without any directory part or control characters; "" when nothing is left.
std::string clean_name(const std::string& name) {
  std::string base = name.substr(name.find_last_of("/\\") == std::string::npos ? 0 : name.find_last_of("/\\") + 1);
  std::string out;
  for (char c : base)
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) out += c;
  while (!out.empty() && (out.front() == '.' || out.front() == ' ')) out.erase(0, 1);
  if (out.size() > 255) out.resize(255);
  return out;
}

std::string extension_of(const std::string& name) {
  const auto dot = name.rfind('.');
  if (dot == std::string::npos || dot + 1 >= name.size()) return "";
  std::string ext = name.substr(dot + 1);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext.size() > 64 ? "" : ext;
}

std::string day_of(int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y%m%d", &tm);
  return buf;
}

}  // namespace

void App::upload_files(const Session& actor, const std::string& channel_id, std::vector<Upload> files,
                       Callback<std::vector<FileInfo>> done) {
  using Out = std::vector<FileInfo>;
  const auto& fs = config().FileSettings;
  if (!fs.EnableFileAttachments)
    return done(fail<Out>(error(501, "api.file.attachments.disabled.app_error",
                                "File attachments have been disabled on this server.")));
  if (!is_valid_id(channel_id)) return done(fail<Out>(bad_param("channel_id")));
  if (files.empty())
    return done(fail<Out>(error(400, "api.file.upload_file.no_files.app_error", "No files were sent (parts named \"files\").")));
  if (files.size() > kFilesPerUpload)
    return done(fail<Out>(error(400, "api.file.upload_file.too_many_files.app_error",
                                "At most " + std::to_string(kFilesPerUpload) + " files can be uploaded at once.")));
  for (auto& f : files) {
    if (static_cast<int64_t>(f.data.size()) > fs.MaxFileSize)
      return done(fail<Out>(error(413, "api.file.upload_file.too_large_detailed.app_error",
                                  "Unable to upload file " + clean_name(f.name) + ". " + std::to_string(f.data.size()) +
                                      " bytes exceeds the maximum allowed " + std::to_string(fs.MaxFileSize) +
                                      " bytes.")));
    f.name = clean_name(f.name);
    if (f.name.empty()) return done(fail<Out>(bad_param("filename")));
  }
  upload_files_flow(actor, channel_id, std::move(files), std::move(done)).start();
}

// The steps of an upload: the channel and the actor's membership, then per file its previews (off the
// loop), its bytes and previews in the store, then one transaction records them all.
Flow App::upload_files_flow(Session actor, std::string channel_id, std::vector<Upload> files,
                            Callback<std::vector<FileInfo>> done) {
  using Out = std::vector<FileInfo>;
  auto [e, ids] = co_await awaiting<AppError, std::shared_ptr<const std::set<std::string>>>(
      alive_, [&](auto resume) { channel_member_ids(channel_id, std::move(resume)); });
  if (!e.ok()) co_return done(fail<Out>(e));
  if (!ids->contains(actor.user_id)) co_return done(fail<Out>(forbidden()));
  const int64_t now = now_ms();
  Out infos;
  std::vector<std::string> written;
  std::string failed;
  for (auto& f : files) {
    FileInfo info;
    info.id = new_id(env_.random());
    info.creator_id = actor.user_id;
    info.channel_id = channel_id;
    info.create_at = info.update_at = now;
    info.name = f.name;
    info.extension = extension_of(f.name);
    info.mime_type = mime_type_of(info.extension);
    info.size = static_cast<int64_t>(f.data.size());
    const std::string dir = day_of(now) + "/teams/noteam/channels/" + channel_id + "/users/" + actor.user_id + "/" + info.id;
    info.path = dir + "/" + info.name;
    // Decoding and scaling an image is CPU work: on a worker, not the node's loop.
    // (Shared with the worker: if the node goes away meanwhile, this frame does too.)
    auto bytes = std::make_shared<std::string>(std::move(f.data));
    auto previews = std::make_shared<std::optional<Previews>>();
    const auto size = image_size(*bytes);
    if (size) {
      co_await awaiting<>(alive_, [&](auto resume) {
        env_.run_blocking([previews, bytes] { *previews = make_previews(*bytes); }, std::move(resume));
      });
    }
    std::vector<std::pair<std::string, std::string>> blobs;
    if (*previews) {
      info.width = (*previews)->size.width;
      info.height = (*previews)->size.height;
      info.has_preview_image = true;
      info.thumbnail_path = dir + "/" + info.name + "_thumb.jpg";
      info.preview_path = dir + "/" + info.name + "_preview.jpg";
      blobs.emplace_back(info.thumbnail_path, std::move((*previews)->thumbnail));
      blobs.emplace_back(info.preview_path, std::move((*previews)->preview));
    } else if (size) {
      info.width = size->width;  // an image too large (or broken) for previews: its size still shows
      info.height = size->height;
    }
    blobs.emplace(blobs.begin(), info.path, std::move(*bytes));
    for (auto& blob : blobs) {
      std::string err = co_await awaiting<std::string>(
          alive_, [&](auto resume) { env_.files().write(blob.first, std::move(blob.second), std::move(resume)); });
      if (!err.empty()) {
        failed = err;
        break;
      }
      written.push_back(blob.first);
    }
    if (!failed.empty()) break;
    infos.push_back(std::move(info));
  }
  std::vector<Statement> s;
  if (failed.empty())
    for (const auto& i : infos)
      s.push_back(Statement{"INSERT INTO FileInfo (" + std::string(kFileInfoColumns) +
                                ") VALUES ($1, $2, '', $3, $4, $4, 0, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                            {i.id, i.creator_id, i.channel_id, i.create_at, i.path, i.thumbnail_path, i.preview_path,
                             i.name, i.extension, i.mime_type, i.size, i.width, i.height,
                             static_cast<int64_t>(i.has_preview_image)}});
  db::Outcome o;
  if (failed.empty())
    o = co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.write(std::move(s), true, std::move(resume)); });
  if (!failed.empty() || !o.ok()) {
    // Nothing recorded: what was written goes again (best effort; an orphan is never visible).
    for (const auto& path : written) env_.files().remove(path, [](std::string) {});
    if (!failed.empty()) {
      env_.log().warn("app: an upload to channel {} failed in the file store: {}", channel_id, failed);
      co_return done(fail<Out>(error(500, "api.file.upload_file.storage.app_error",
                                     "Unable to store the file: the file store failed.", failed)));
    }
    co_return done(fail<Out>(from_db(o.error)));
  }
  co_return done(ok(std::move(infos)));
}

void App::readable_file(const Session& actor, const std::string& file_id, Callback<FileInfo> done) {
  if (!is_valid_id(file_id)) return done(fail<FileInfo>(bad_param("file_id")));
  // From the master: a file is often read a moment after its upload or its post.
  store_.write({Statement{std::string("SELECT ") + kFileInfoColumns + " FROM FileInfo WHERE Id = $1", {file_id}}},
               false, [this, alive = alive_, actor, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<FileInfo>(from_db(o.error)));
                 if (o.result().rows.empty()) return done(fail<FileInfo>(not_found("file")));
                 FileInfo f = file_info_from_row(o.result().rows[0]);
                 if (f.delete_at != 0) return done(fail<FileInfo>(not_found("file")));
                 if (f.post_id.empty()) {  // not attached yet: its uploader's alone
                   if (f.creator_id != actor.user_id && !actor.is_system_admin())
                     return done(fail<FileInfo>(forbidden()));
                   return done(ok(std::move(f)));
                 }
                 can_read_channel(actor, f.channel_id, [f, done](AppError e, std::optional<Channel>) {
                   if (!e.ok()) return done(fail<FileInfo>(e));
                   done(ok(f));
                 });
               });
}

void App::get_file_info(const Session& actor, const std::string& file_id, Callback<FileInfo> done) {
  readable_file(actor, file_id, std::move(done));
}

void App::get_file(const Session& actor, const std::string& file_id, FileVariant variant,
                   Callback<std::pair<FileInfo, std::string>> done) {
  using Out = std::pair<FileInfo, std::string>;
  readable_file(actor, file_id, [this, alive = alive_, variant, done](Result<FileInfo> f) {
    if (!*alive) return;
    if (!f.ok()) return done(fail<Out>(f.error));
    std::string path = f.value.path;
    if (variant != FileVariant::original) {
      if (!f.value.has_preview_image)
        return done(fail<Out>(variant == FileVariant::thumbnail
                                  ? error(400, "api.file.get_file_thumbnail.no_thumbnail.app_error",
                                          "The file has no thumbnail: it is not an image Chorus could read.")
                                  : error(400, "api.file.get_file_preview.no_preview.app_error",
                                          "The file has no preview: it is not an image Chorus could read.")));
      path = variant == FileVariant::thumbnail ? f.value.thumbnail_path : f.value.preview_path;
    }
    env_.files().read(path, [alive, info = f.value, done](std::optional<std::string> data, std::string err) {
      if (!*alive) return;
      if (!data)
        return done(fail<Out>(error(500, "api.file.get_file.storage.app_error",
                                    "Unable to read the file from the file store.", err)));
      done(ok(Out{info, std::move(*data)}));
    });
  });
}

void App::check_file_store(std::function<void(std::string)> done) {
  const std::string path = "health/" + env_.node_name() + ".check";
  const std::string stamp = std::to_string(env_.wall_now().millis());
  auto answered = std::make_shared<bool>(false);
  auto finish = [answered, done](std::string err) {
    if (std::exchange(*answered, true)) return;
    done(std::move(err));
  };
  env_.set_timer(Duration{5'000'000}, [finish] { finish("the file store did not answer within 5 s"); });
  // A name per node (the nodes check at once); the path is only ever this node's.
  std::string safe;
  for (char c : path) safe += (std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '-') ? c : '_';
  env_.files().write(safe, stamp, [this, alive = alive_, safe, stamp, finish](std::string err) {
    if (!*alive) return;
    if (!err.empty()) return finish(err);
    env_.files().read(safe, [stamp, finish](std::optional<std::string> data, std::string err2) {
      if (!data) return finish(err2);
      finish(*data == stamp ? "" : "the file store gave back something else than was written");
    });
  });
}

}  // namespace chorus::app
