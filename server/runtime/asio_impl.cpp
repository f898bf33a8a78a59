// Asio's separately compiled implementation (BOOST_ASIO_SEPARATE_COMPILATION): compiled once here
// instead of in every file that includes Asio. Beast's joins it when the HTTP server lands.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
