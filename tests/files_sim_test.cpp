// Files across a simulated cluster (real node code, the simulator's shared file store, virtual time): an
// image uploaded on one node is posted, reaches the other node's socket with metadata.files, downloads
// byte for byte with a valid thumbnail and preview; bad uploads are refused with Mattermost's errors and
// leave nothing behind; a store that fails leaves no half-written file visible.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <boost/json.hpp>

#include "server/api/multipart.h"
#include "server/app/avatar.h"
#include "server/app/images.h"
#include "simulator/chat_cluster.h"
#include "tests/api_test_helpers.h"
#include "tests/chat_world.h"

using namespace chorus;
using namespace chorus::sim;
namespace json = boost::json;
using namespace chorus::testing;

namespace {

const std::string kBoundary = "----chorus-test-boundary";

struct FilePart {
  std::string name, data;
};

std::string multipart(const std::string& channel, const std::vector<FilePart>& files,
                      const std::vector<std::string>& client_ids = {}) {
  std::string b;
  b += "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"channel_id\"\r\n\r\n" + channel + "\r\n";
  for (const auto& id : client_ids)
    b += "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"client_ids\"\r\n\r\n" + id + "\r\n";
  for (const auto& f : files)
    b += "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"files\"; filename=\"" + f.name +
         "\"\r\nContent-Type: application/octet-stream\r\n\r\n" + f.data + "\r\n";
  return b + "--" + kBoundary + "--\r\n";
}

api::Response upload(ChatCluster& c, int node, const std::string& token, const std::string& body,
                     const std::string& content_type = "multipart/form-data; boundary=" + kBoundary) {
  api::Request r;
  r.method = "POST";
  r.path = "/api/v4/files";
  r.headers = {{"authorization", "Bearer " + token}, {"content-type", content_type}};
  r.body = body;
  return c.request(node, std::move(r));
}

// A real PNG (the initials avatar Chorus draws).
std::string png() {
  app::User u;
  u.id = "ybndrfg8ejkmcpqxot1uwisza3";
  u.username = "picture";
  return app::default_avatar_png(u);
}

size_t file_count(ChatCluster& c) { return c.kernel().shared_files().size(); }

}  // namespace

TEST(FilesSim, AnImageUploadedOnOneNodeIsPostedAndDownloadsOnTheOtherWithThumbnailAndPreview) {
  ChatCluster c({.seed = 7, .nodes = 2});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  auto sb = c.connect(1, w.b);
  c.kernel().run_for(Duration{200'000});
  const std::string image = png();
  ASSERT_TRUE(app::image_size(image));
  auto up = upload(c, 0, w.a, multipart(w.channel, {{"face.png", image}, {"notes.txt", "plain words"}}, {"c1", "c2"}));
  ASSERT_EQ(up.status, 201) << up.body;
  const auto infos = body(up).as_object().at("file_infos").as_array();
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_EQ(body(up).as_object().at("client_ids").as_array(), (json::array{"c1", "c2"}));
  const auto img = infos[0].as_object();
  EXPECT_EQ(img.at("name").as_string(), "face.png");
  EXPECT_EQ(img.at("mime_type").as_string(), "image/png");
  EXPECT_EQ(img.at("extension").as_string(), "png");
  EXPECT_TRUE(img.at("has_preview_image").as_bool());
  EXPECT_EQ(img.at("size").as_int64(), static_cast<int64_t>(image.size()));
  EXPECT_EQ(img.at("width").as_int64(), app::image_size(image)->width);
  EXPECT_EQ(img.at("post_id").as_string(), "");
  const std::string img_id(img.at("id").as_string()), txt_id(infos[1].as_object().at("id").as_string());
  EXPECT_FALSE(infos[1].as_object().at("has_preview_image").as_bool());
  // Before it is posted, only its uploader reads it.
  expect_error(c.call(1, "GET", "/api/v4/files/" + img_id, "", w.b), 403);

  auto posted = c.call(0, "POST", "/api/v4/posts",
                       obj({{"channel_id", w.channel}, {"message", ""}, {"file_ids", json::array{json::string(img_id), json::string(txt_id)}}}),
                       w.a);
  ASSERT_EQ(posted.status, 201) << posted.body;
  const std::string post_id = field(posted, "id");
  c.kernel().run_for(Duration{500'000});
  auto ev = events_of(*sb, "posted");
  ASSERT_EQ(ev.size(), 1u);
  const auto p = json::parse(json::parse(ev[0]).as_object().at("data").as_object().at("post").as_string()).as_object();
  EXPECT_EQ(p.at("file_ids").as_array().size(), 2u);
  auto got = c.call(1, "GET", "/api/v4/posts/" + post_id, "", w.b);
  const auto files = body(got).as_object().at("metadata").as_object().at("files").as_array();
  ASSERT_EQ(files.size(), 2u) << got.body;
  EXPECT_EQ(files[0].as_object().at("post_id").as_string(), post_id);

  // Bob, on the other node, downloads it byte for byte, and its thumbnail and preview are images.
  auto bytes = c.call(1, "GET", "/api/v4/files/" + img_id, "", w.b);
  ASSERT_EQ(bytes.status, 200);
  EXPECT_EQ(bytes.body, image);
  EXPECT_EQ(header(bytes, "Content-Type"), "image/png");
  EXPECT_EQ(header(bytes, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(header(bytes, "Content-Disposition").rfind("inline; filename=\"face.png\"", 0), 0u);
  EXPECT_EQ(header(c.call(1, "GET", "/api/v4/files/" + img_id + "?download=1", "", w.b), "Content-Disposition").rfind("attachment", 0), 0u);
  for (const char* which : {"thumbnail", "preview"}) {
    auto t = c.call(1, "GET", "/api/v4/files/" + img_id + "/" + which, "", w.b);
    ASSERT_EQ(t.status, 200) << which;
    EXPECT_EQ(header(t, "Content-Type"), "image/jpeg");
    const auto size = app::image_size(t.body);
    ASSERT_TRUE(size) << which << " is not an image";
    EXPECT_LE(size->width, std::string(which) == "thumbnail" ? 120 : 1920);
  }
  EXPECT_EQ(str(body(c.call(1, "GET", "/api/v4/files/" + txt_id + "/info", "", w.b)), "mime_type"), "text/plain");
  expect_error(c.call(1, "GET", "/api/v4/files/" + txt_id + "/thumbnail", "", w.b), 400,
               "api.file.get_file_thumbnail.no_thumbnail");

  // Deleting the post takes its files out of reach.
  ASSERT_EQ(c.call(0, "DELETE", "/api/v4/posts/" + post_id, "", w.a).status, 200);
  expect_error(c.call(1, "GET", "/api/v4/files/" + img_id, "", w.b), 404);
}

TEST(FilesSim, BadUploadsAreRefusedWithMattermostsErrorsAndLeaveNothingBehind) {
  ChatCluster c({.seed = 8, .nodes = 2, .configure = [](config::Config& cfg, int) { cfg.FileSettings.MaxFileSize = 1000; }});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  const size_t before = file_count(c);
  expect_error(upload(c, 0, w.a, multipart(w.channel, {{"big.bin", std::string(1001, 'x')}})), 413,
               "api.file.upload_file.too_large");
  expect_error(upload(c, 0, w.a, multipart(w.channel, {{"a.txt", "x"}}), "multipart/form-data"), 400);
  std::string truncated = multipart(w.channel, {{"a.txt", "some text"}});
  truncated.resize(truncated.size() - 30);
  expect_error(upload(c, 0, w.a, truncated), 400, "api.file.upload_file.read_request");
  expect_error(upload(c, 0, w.a, multipart(w.channel, {})), 400, "api.file.upload_file.no_files");
  expect_error(upload(c, 0, w.a, multipart("notachannel", {{"a.txt", "x"}})), 400);
  expect_error(upload(c, 0, w.a, "raw bytes", "application/octet-stream"), 400);
  // Not a member of the channel.
  auto other = c.call(0, "POST", "/api/v4/channels",
                      obj({{"team_id", w.team}, {"name", "private"}, {"display_name", "P"}, {"type", "P"}}), w.a);
  expect_error(upload(c, 1, w.b, multipart(field(other, "id"), {{"a.txt", "x"}})), 403);
  // A name that tries to leave its directory keeps only its last part.
  auto sneaky = upload(c, 0, w.a, multipart(w.channel, {{"../../etc/passwd", "x"}}));
  ASSERT_EQ(sneaky.status, 201) << sneaky.body;
  EXPECT_EQ(body(sneaky).as_object().at("file_infos").as_array()[0].as_object().at("name").as_string(), "passwd");
  EXPECT_EQ(file_count(c), before + 1) << "only the good upload is stored";
  // Someone else's file cannot be attached.
  const std::string alices(body(sneaky).as_object().at("file_infos").as_array()[0].as_object().at("id").as_string());
  expect_error(c.call(1, "POST", "/api/v4/posts",
                      obj({{"channel_id", w.channel}, {"message", "mine"}, {"file_ids", json::array{json::string(alices)}}}),
                      w.b),
               400, "api.post.create_post.file_ids");
  expect_error(c.call(1, "POST", "/api/v4/posts", obj({{"channel_id", w.channel}, {"message", "x"}, {"file_ids", "x"}}), w.b),
               400);
  // A simple upload (the body is the file) works as Mattermost's.
  api::Request r;
  r.method = "POST";
  r.path = "/api/v4/files";
  r.query = {{"channel_id", w.channel}, {"filename", "raw.txt"}};
  r.headers = {{"authorization", "Bearer " + w.a}, {"content-type", "text/plain"}};
  r.body = "raw body";
  auto raw = c.request(0, std::move(r));
  ASSERT_EQ(raw.status, 201) << raw.body;
  EXPECT_EQ(body(raw).as_object().at("file_infos").as_array()[0].as_object().at("size").as_int64(), 8);
}

TEST(FilesSim, AFileStoreThatFailsLeavesNoHalfWrittenFileAndThePingSaysSo) {
  ChatCluster c({.seed = 9, .nodes = 2});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  auto ping = c.call(0, "GET", "/api/v4/system/ping?get_server_status=true");
  EXPECT_EQ(str(body(ping), "filestore_status"), "OK") << ping.body;
  const size_t before = file_count(c);
  c.kernel().file_store_faults().down = true;
  expect_error(upload(c, 0, w.a, multipart(w.channel, {{"face.png", png()}})), 500, "api.file.upload_file.storage");
  auto sick = c.call(0, "GET", "/api/v4/system/ping?get_server_status=true");
  EXPECT_EQ(sick.status, 500);
  EXPECT_EQ(str(body(sick), "filestore_status"), "UNHEALTHY");
  auto* db = c.kernel().databases().find("db1");
  auto rows = db->execute({db::Statement{"SELECT COUNT(*) FROM FileInfo", {}}}, false);
  EXPECT_EQ(std::get<int64_t>(rows.result().rows.at(0).at(0)), 0) << "no row for a file not stored";
  c.kernel().file_store_faults().down = false;
  c.kernel().file_store_faults().delay = Duration{200'000};
  auto slow = upload(c, 1, w.b, multipart(w.channel, {{"face.png", png()}}));
  EXPECT_EQ(slow.status, 201) << "a slow store is only slow";
  EXPECT_EQ(file_count(c), before + 3) << "the image, its thumbnail and preview (the ping's marker is in before)";
}

// HA on and a node whose files are its own (a local disk instead of the shared directory): the others warn
// that the store is not shared, naming it, once; nodes that do share it warn about nobody.
TEST(FilesSim, ANodeThatDoesNotShareTheFileStoreIsNamedInTheOthersLogs) {
  ChatCluster c({.seed = 10, .nodes = 3});
  c.kernel().unshare_files(2);
  ASSERT_TRUE(c.start_all());
  c.kernel().run_for(Duration{30'000'000});
  EXPECT_EQ(c.node(0)->shared_files_warnings(), 1u) << "node 0 cannot see node 2's marker";
  EXPECT_EQ(c.node(1)->shared_files_warnings(), 1u);
  EXPECT_EQ(c.node(2)->shared_files_warnings(), 2u) << "node 2 sees neither of the others'";
  c.kernel().run_for(Duration{120'000'000});
  EXPECT_EQ(c.node(0)->shared_files_warnings(), 1u) << "once per peer, not at every check";

  ChatCluster shared({.seed = 10, .nodes = 3});
  ASSERT_TRUE(shared.start_all());
  shared.kernel().run_for(Duration{90'000'000});
  for (int n = 0; n < 3; ++n) EXPECT_EQ(shared.node(n)->shared_files_warnings(), 0u);
}
